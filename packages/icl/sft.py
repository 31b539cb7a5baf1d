"""ICL's SFT data (Eq. 3): Yes/No anchor-localisation pairs with the retriever's hard negatives, and VQA pairs.

Positives pair a training text with an image of its person (Z+: "Yes"); negatives with one of the retriever's
top-10 images of another person for that text (Z−: "No"). VQA pairs ask the human-centred questions about an
image and answer from its annotations (synthetic world). Each sample is a conversation in the ChatReID
conversation format (`ireid.chatreid.conversations`), image first, then the prompt THI asks at test time, so the
ChatReID training module tunes the model on them; `ireid icl build-sft` writes them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ireid.core.image_conversations import image_question_conversation
from ireid.core.records import Record
from ireid.icl.perception import TOPIC_ATTRIBUTES, anchor_prompt, annotated_answer, vqa_questions

ANCHOR_TASK = "icl_anchor"
VQA_TASK = "icl_vqa"
STAGE = 3  # ICL's SFT tunes a whole model as ChatReID's stage 3 does (its own vision encoder frozen)


def anchor_conversation(text: str, image_key: str, match: bool) -> dict[str, Any]:
    """Eq. 2's question about one image, answered Yes (the text's person) or No."""
    return image_question_conversation(STAGE, ANCHOR_TASK, image_key, anchor_prompt(text), "Yes" if match else "No")


def vqa_conversation(image_key: str, question: str, answer: str) -> dict[str, Any]:
    """One human-centred question about an image, with its annotated answer."""
    return image_question_conversation(STAGE, VQA_TASK, image_key, question, answer)


def sft_conversations(
    records: Sequence[Record],
    negatives: Mapping[str, Sequence[str]],
    samples: int,
    vqa_share: float = 0.3,
    seed: int = 0,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """`samples` keyed conversations: anchor pairs, half Yes and half No, and a `vqa_share` of VQA pairs.

    `negatives` maps a record key to the hard negatives of its text (`ireid.core.gallery.closest_other_people`);
    a record's text is its first caption. Each sample draws from its own stream (seed, index), so a run is
    reproducible.
    """
    if not 0.0 <= vqa_share <= 1.0:
        raise ValueError(f"vqa_share must lie in [0, 1], got {vqa_share}")
    by_pid: dict[int, list[str]] = {}
    for record in records:
        by_pid.setdefault(record.pid, []).append(record.key)
    texts = [r for r in records if r.captions and negatives.get(r.key)]
    if not texts:
        raise ValueError("no record has both a caption and hard negatives to build anchor pairs from")
    annotated = [r for r in records if r.attributes]
    if vqa_share > 0 and not annotated:
        raise ValueError("VQA pairs need records with 'attributes' (synthetic world); set vqa_share to 0")
    questions = vqa_questions()
    for index in range(samples):
        rng = random.Random(f"{seed}:icl-sft:{index}")
        if vqa_share > 0 and rng.random() < vqa_share:
            record = rng.choice(annotated)
            answerable = [(t, q) for t, q in questions if any(a in record.attributes for a in TOPIC_ATTRIBUTES[t])]
            if answerable:
                topic, question = rng.choice(answerable)
                answer = annotated_answer(record.attributes, topic, rng)
                yield f"{VQA_TASK}-{index:07d}", vqa_conversation(record.key, question, answer)
                continue
        record = rng.choice(texts)
        match = index % 2 == 0
        image = rng.choice(by_pid[record.pid]) if match else rng.choice(list(negatives[record.key]))
        yield f"{ANCHOR_TASK}-{index:07d}", anchor_conversation(record.captions[0], image, match)
