"""Byte-level BPE tokenizer trained on the data set's own text, for the tiny models.

No real vocabulary ships offline, and the tiny models learn from scratch anyway, so a small vocabulary fitted to
the captions and dialogues keeps the embedding tables (and the sequences) short. One tokenizer serves every kind:
it carries the union of the special tokens the architectures need, and `ireid.core.factory` adapts it per kind
(CLIP's start/end tokens, the image token each processor expects, the chat template).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ireid.core.records import Record

ENDOFTEXT = "<|endoftext|>"
STARTOFTEXT = "<|startoftext|>"
UNK = "<unk>"
MASK = "<mask>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
IMAGE = "<image>"
VIDEO = "<video>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"

# Order fixes the ids (0, 1, ...). CLIP treats eos_token_id == 2 as "legacy: pool at argmax id", so <|endoftext|>
# (CLIP's eos) must not get id 2.
SPECIAL_TOKENS = (
    ENDOFTEXT,
    STARTOFTEXT,
    UNK,
    MASK,
    IM_START,
    IM_END,
    IMAGE,
    VIDEO,
    VISION_START,
    VISION_END,
    IMAGE_PAD,
    VIDEO_PAD,
)


def chatml_template(image: str = IMAGE, video: str = VIDEO) -> str:
    """Qwen2-style ChatML; `image`/`video` is what an image/video content item renders to (differs per VLM).

    Assistant turns sit in `{% generation %}` blocks so `return_assistant_tokens_mask=True` yields a loss mask.
    """
    return (
        "{%- for message in messages %}"
        "{{- '" + IM_START + "' + message['role'] + '\\n' }}"
        "{%- if message['role'] == 'assistant' %}{%- generation %}"
        "{%- if message['content'] is string %}{{- message['content'] }}"
        "{%- else %}{%- for item in message['content'] %}{%- if item['type'] == 'text' %}{{- item['text'] }}"
        "{%- endif %}{%- endfor %}{%- endif %}"
        "{{- '" + IM_END + "' }}"
        "{%- endgeneration %}{{- '\\n' }}"
        "{%- else %}"
        "{%- if message['content'] is string %}{{- message['content'] }}"
        "{%- else %}{%- for item in message['content'] %}"
        "{%- if item['type'] == 'text' %}{{- item['text'] }}"
        "{%- elif item['type'] == 'image' %}{{- '" + image + "' }}"
        "{%- elif item['type'] == 'video' %}{{- '" + video + "' }}"
        "{%- endif %}{%- endfor %}{%- endif %}"
        "{{- '" + IM_END + "\\n' }}"
        "{%- endif %}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '" + IM_START + "assistant\\n' }}{%- endif %}"
    )


def train_bpe_tokenizer(
    texts: Iterable[str],
    out_dir: Path | str,
    vocab_size: int = 2048,
    model_max_length: int = 1024,
) -> PreTrainedTokenizerFast:
    """Train, save to `out_dir` (reload with `AutoTokenizer.from_pretrained(out_dir)`) and return the tokenizer.

    Byte-level, so any text encodes (no unknown tokens) and decodes back exactly; the result is the same for the
    same texts. `vocab_size` is an upper bound: a small corpus yields fewer merges. No bos/eos are added when
    encoding; the factory adds CLIP's, and the chat template supplies the LLMs'.
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=STARTOFTEXT,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        unk_token=UNK,
        mask_token=MASK,
        model_max_length=model_max_length,
        chat_template=chatml_template(),
    )
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def record_text(record: Record) -> Iterator[str]:
    """Every text a record carries: what a tokenizer for its data set must cover."""
    yield from record.captions
    yield from (t for t in (record.initial_description, record.fine_description) if t)
    yield from record.sub_captions
    for qa in record.qas:
        yield qa.question
        yield qa.answer
        yield from qa.options


def dataset_tokenizer(
    data_dir: Path | str, vocab_size: int = 2048, extra_texts: Sequence[str] = (), name: str = "tokenizer"
) -> PreTrainedTokenizerFast:
    """The tokenizer of a shard folder, trained on its train split (plus `extra_texts`) once and saved beside the
    shards as `<name>-<vocab_size>`.

    Training happens in a temporary folder renamed into place, so concurrent processes (DDP ranks) that
    race here all end up loading one complete tokenizer.
    """
    from ireid.core.loader import load_records  # the loader imports torch/webdataset; keep this module light

    target = Path(data_dir) / f"{name}-{vocab_size}"
    if not (target / "tokenizer.json").exists():
        texts = [t for r in load_records(data_dir, "train") for t in record_text(r)]
        texts += list(extra_texts)
        with tempfile.TemporaryDirectory(dir=data_dir, prefix=f".{name}-") as tmp:
            train_bpe_tokenizer(texts, Path(tmp) / "tok", vocab_size=vocab_size)
            try:
                os.rename(Path(tmp) / "tok", target)
            except OSError:
                if not (target / "tokenizer.json").exists():
                    raise
    return PreTrainedTokenizerFast.from_pretrained(str(target))
