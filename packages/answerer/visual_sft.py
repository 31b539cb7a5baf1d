"""The visual witness's own small SFT: a data set's Q&A pairs asked about the person's image, in ChatReID's
conversation format, so a ChatReID model tuned on them (a stage-3 fit) answers as the witness does.

Each sample is one image, the witness instruction with a question about that person in that outfit (asked of any of
their records, `prompts/visual_witness.txt`), and its answer. Where this image does not show the asked attribute
(its record's `attributes`, which hold what the image shows, lack it), the answer is "I don't know.", the
instruction's third rule. Questions under 15 characters are left out: the witness answers them by rule without a
model call.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from ireid.answerer.llm_witness import load_prompt
from ireid.answerer.visual_witness import PROMPT_FILE, visual_prompt
from ireid.core.answers import MIN_QUESTION_CHARS, UNKNOWN
from ireid.core.image_conversations import image_question_conversation
from ireid.core.records import QA, Record

TASK = "visual_witness"
STAGE = 3  # tuned as ChatReID's stage 3 tunes a whole model, its vision encoder frozen


def shown_answer(record: Record, qa: QA) -> str:
    """The answer the image supports: the record's own, or "I don't know." for an attribute the image hides."""
    if record.attributes and qa.attribute and qa.attribute not in record.attributes:
        return UNKNOWN
    return qa.answer


def visual_witness_conversations(
    records: Sequence[Record], samples: int, seed: int = 0
) -> Iterator[tuple[str, dict[str, Any]]]:
    """`samples` keyed conversations over every (record, question) pair with an answer; each sample draws from
    its own stream (seed, index), so a run is reproducible and resumable."""
    outfits: dict[tuple[int, int], list[QA]] = defaultdict(list)
    for record in records:
        outfits[record.pid, record.clothes_id] += [
            qa for qa in record.qas if len(qa.question.strip()) >= MIN_QUESTION_CHARS and qa.answer
        ]
    pairs = [(r, qa) for r in records for qa in outfits[r.pid, r.clothes_id]]
    if not pairs:
        raise ValueError("no record holds a Q&A pair with an answer to tune the visual witness on")
    template = load_prompt(PROMPT_FILE)
    for index in range(samples):
        record, qa = random.Random(f"{seed}/{index}").choice(pairs)
        prompt = visual_prompt(qa.question, template)
        yield (
            f"{TASK}-{index:07d}",
            image_question_conversation(STAGE, TASK, record.key, prompt, shown_answer(record, qa)),
        )
