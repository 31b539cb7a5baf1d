"""The tuned witness's training data: the chats `LLMWitness` builds, answered with the data set's annotated answers.

Every example is a record's memory (its fine description) with one of its annotated questions, in the paper's
prompt (`witness_conversation`, layout "user"), and the annotated answer as the reply. Prompts are tokenized
exactly as `LocalChatLLM` tokenizes them at answer time; the loss covers the reply and the end-of-turn token only.

The questions about one memory share most of their prompt (instruction and memory come before the question), so
they are packed into one sequence: the shared prompt tokens once, then each example's own prompt tail and reply,
placed at the positions they would have alone and attending to the shared part and to themselves only. The model
computes exactly what it would for each example on its own, at a fraction of the tokens.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from ireid.answerer.llm_witness import load_prompt, witness_conversation
from ireid.core.answers import MIN_QUESTION_CHARS
from ireid.core.llm import Message
from ireid.core.records import Record

IGNORE = -100
"""Target of a position that is not scored (prompt, padding, the last token of an example)."""
PAD_SEGMENT = -1


@dataclass(frozen=True)
class Example:
    """One chat the witness answers and the reply it should give."""

    conversation: list[Message]
    reply: str


@dataclass(frozen=True)
class Encoded:
    """An example's token ids: the prompt as `LocalChatLLM` sends it, and the reply followed by the end-of-turn id."""

    prompt: list[int]
    reply: list[int]


@dataclass(frozen=True)
class Packed:
    """Examples sharing a prompt start, as one sequence.

    `segments`: 0 for the shared tokens, k for the k-th example's own tokens. `positions`: each token's position
    in its example alone. `targets[i]`: the token that follows position i when it is a reply token, else IGNORE.
    """

    input_ids: list[int]
    segments: list[int]
    positions: list[int]
    targets: list[int]


def witness_examples(
    records: Sequence[Record], count: int, seed: int, pairs_per_record: int | None = None
) -> list[list[Example]]:
    """About `count` examples from the records' annotated Q&A pairs, grouped by record (one group per memory).

    Records are visited in an order shuffled with `seed`; each gives its pairs with questions of at least
    MIN_QUESTION_CHARS characters (all of them, or `pairs_per_record` drawn at random), until `count` are taken.
    Records without a fine description (the memory) are skipped.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if pairs_per_record is not None and pairs_per_record < 1:
        raise ValueError(f"pairs_per_record must be at least 1 or None, got {pairs_per_record}")
    template = load_prompt()
    rng = random.Random(seed)
    order = list(records)
    rng.shuffle(order)
    groups: list[list[Example]] = []
    taken = 0
    for record in order:
        pairs = [qa for qa in record.qas if len(qa.question.strip()) >= MIN_QUESTION_CHARS]
        if not record.fine_description or not pairs:
            continue
        if pairs_per_record is not None and len(pairs) > pairs_per_record:
            pairs = rng.sample(pairs, pairs_per_record)
        pairs = pairs[: count - taken]
        memory = record.fine_description
        groups.append([Example(witness_conversation(template, qa.question, memory), qa.answer) for qa in pairs])
        taken += len(pairs)
        if taken == count:
            break
    if not groups:
        raise ValueError(f"none of the {len(records)} records has a fine description and a question to learn from")
    return groups


def reply_end_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that ends a reply: the tokenizer's eos, which `LocalChatLLM` stops at (ChatML's <|im_end|>)."""
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{type(tokenizer).__name__} has no eos token to end the witness's replies with")
    return tokenizer.eos_token_id


def encode_example(tokenizer: PreTrainedTokenizerBase, example: Example) -> Encoded:
    """The prompt ids exactly as `LocalChatLLM._prompt_ids` makes them, and the reply ids plus the end id."""
    text = tokenizer.apply_chat_template(example.conversation, tokenize=False, add_generation_prompt=True)
    prompt = tokenizer(text, add_special_tokens=False).input_ids
    reply = tokenizer(example.reply.strip(), add_special_tokens=False).input_ids
    return Encoded(list(prompt), [*reply, reply_end_id(tokenizer)])


def _common_prefix(sequences: Sequence[list[int]]) -> int:
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for i in range(length):
        if any(s[i] != first[i] for s in sequences):
            return i
    return length


def pack(examples: Sequence[Encoded]) -> Packed:
    """One sequence for examples whose prompts start alike (see the module doc).

    Each example keeps at least its last prompt token, which predicts its first reply token.
    """
    if not examples:
        raise ValueError("pack needs at least one example")
    if any(not e.prompt or not e.reply for e in examples):
        raise ValueError("every example needs prompt and reply tokens")
    shared = min(_common_prefix([e.prompt for e in examples]), min(len(e.prompt) for e in examples) - 1)
    input_ids = list(examples[0].prompt[:shared])
    segments = [0] * shared
    positions = list(range(shared))
    targets = [IGNORE] * shared
    for k, example in enumerate(examples, start=1):
        own = example.prompt[shared:] + example.reply
        first_reply = len(example.prompt) - shared  # index in `own` of the first reply token
        input_ids += own
        segments += [k] * len(own)
        positions += range(shared, shared + len(own))
        targets += [own[j + 1] if j + 1 >= first_reply and j + 1 < len(own) else IGNORE for j in range(len(own))]
    return Packed(input_ids, segments, positions, targets)


def collate(batch: Sequence[Packed], pad_id: int) -> dict[str, Tensor]:
    """Right-padded tensors: input_ids, segments (PAD_SEGMENT on padding), positions, targets (IGNORE on padding)."""
    width = max(len(p.input_ids) for p in batch)
    out = {
        "input_ids": torch.full((len(batch), width), pad_id, dtype=torch.long),
        "segments": torch.full((len(batch), width), PAD_SEGMENT, dtype=torch.long),
        "positions": torch.zeros((len(batch), width), dtype=torch.long),
        "targets": torch.full((len(batch), width), IGNORE, dtype=torch.long),
    }
    for row, packed in enumerate(batch):
        n = len(packed.input_ids)
        for name in ("input_ids", "segments", "positions", "targets"):
            out[name][row, :n] = torch.tensor(getattr(packed, name))
    return out


def attention_mask(segments: Tensor, dtype: torch.dtype) -> Tensor:
    """The additive (batch, 1, T, T) mask of packed sequences.

    A token sees the earlier shared tokens and the earlier tokens of its own example; a padding token sees only
    itself (so no row is empty).
    """
    length = segments.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    query, key = segments[:, :, None], segments[:, None, :]
    allowed = causal & (key != PAD_SEGMENT) & ((key == 0) | (key == query))
    allowed |= torch.eye(length, dtype=torch.bool, device=segments.device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segments.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


class PackedBatches:
    """An endless, deterministic stream of collated batches of packed sequences.

    Micro-batch m of this reader is global batch g = m * readers + reader; pass p = g // batches_per_pass visits the
    sequences in an order shuffled with (seed, p). The stream is a function of m, so a run resumed at optimiser step
    s starts at m = s * accumulation and sees exactly the batches an uninterrupted run would.
    """

    def __init__(
        self,
        sequences: Sequence[Packed],
        batch_size: int,
        pad_id: int,
        seed: int = 0,
        start: int = 0,
        reader: int = 0,
        readers: int = 1,
    ) -> None:
        if not sequences:
            raise ValueError("no training sequences")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.sequences = list(sequences)
        self.batch_size = batch_size
        self.pad_id = pad_id
        self.seed = seed
        self.start = start
        self.reader = reader
        self.readers = readers
        self.batches_per_pass = -(-len(self.sequences) // batch_size)

    def batch(self, micro: int) -> dict[str, Tensor]:
        """The collated batch of micro-batch index `micro`."""
        index = micro * self.readers + self.reader
        passed, slot = divmod(index, self.batches_per_pass)
        order = list(range(len(self.sequences)))
        random.Random(f"{self.seed}/{passed}").shuffle(order)
        chosen = order[slot * self.batch_size : (slot + 1) * self.batch_size]
        return collate([self.sequences[i] for i in chosen], self.pad_id)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        micro = self.start
        while True:
            yield self.batch(micro)
            micro += 1
