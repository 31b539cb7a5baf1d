"""Whether a witness's answers agree with its memory: the measure of the benchmark and of the tuned witness's
validation, so both count the same thing.

An answer is read back with the vocabulary's parser (`ireid.core.vocabulary.parse.parse_description`), so the
scoring needs records whose `attributes` hold the truth and Q&A pairs that name their `attribute`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from ireid.core.answers import MIN_QUESTION_CHARS
from ireid.core.records import QA, Record
from ireid.core.vocabulary.parse import parse_description

QUOTAS = {"descriptive": 0.4, "yes_no": 0.4, "multiple_choice": 0.2}
SCORING = (
    "An answer is consistent when parse_description(answer) gives the record's value for the asked attribute. "
    "A yes/no answer is also consistent when it states no value for that attribute and its first word has the "
    "right polarity ('Yes' when the question's assumption is true, 'No' when it is false). 'strict' additionally "
    "fails yes/no answers whose first word is 'Yes'/'No' with the wrong polarity, whatever value they state."
)
_FIRST_WORD = re.compile(r"^\W*(\w+)")


def _scorable(record: Record, qa: QA) -> bool:
    return len(qa.question.strip()) >= MIN_QUESTION_CHARS and qa.attribute in record.attributes


def sample_questions(
    records: Sequence[Record], count: int, seed: int, quotas: dict[str, float] = QUOTAS
) -> list[tuple[Record, QA]]:
    """`count` (record, QA) pairs split over the question types by `quotas`, at most one per record.

    Records are shuffled with `seed`; only questions of at least MIN_QUESTION_CHARS characters whose attribute the
    record's `attributes` hold are drawn (the others cannot be scored).
    """
    shuffled = list(records)
    rng = random.Random(seed)
    rng.shuffle(shuffled)
    wanted = {qtype: round(share * count) for qtype, share in quotas.items()}
    wanted[next(iter(wanted))] += count - sum(wanted.values())
    chosen = []
    for record in shuffled:
        open_types = [t for t, n in wanted.items() if n > 0]
        pool = [qa for qa in record.qas if qa.qtype in open_types and _scorable(record, qa)]
        if not pool:
            continue
        qa = rng.choice(pool)
        wanted[qa.qtype] -= 1
        chosen.append((record, qa))
        if len(chosen) == count:
            return chosen
    raise ValueError(f"{len(records)} records hold too few scorable questions for {count} ({wanted} missing)")


def polarity(answer: str) -> str | None:
    """ "yes" / "no" when the answer's first word is one of them, else None."""
    match = _FIRST_WORD.match(answer)
    word = match.group(1).lower() if match else ""
    return word if word in ("yes", "no") else None


def score(answer: str, record: Record, qa: QA) -> dict[str, bool]:
    """{"consistent", "strict"} of one answer (see SCORING)."""
    if qa.attribute not in record.attributes:
        raise ValueError(
            f"record {record.key}: field 'attributes' has no {qa.attribute!r} to score the answer to {qa.question!r}"
        )
    truth = record.attributes[qa.attribute]
    stated = parse_description(answer).get(qa.attribute)
    consistent = stated == truth
    strict = consistent
    if qa.qtype == "yes_no":
        expected = "yes" if qa.answer.startswith("Yes") else "no"
        said = polarity(answer)
        consistent = consistent or (stated is None and said == expected)
        strict = consistent and said in (None, expected)
    return {"consistent": consistent, "strict": strict}


def consistency(answers: Sequence[str], items: Sequence[tuple[Record, QA]]) -> dict[str, Any]:
    """Shares of consistent and strict answers, overall and per question type present, and every scored answer."""
    if not items or len(answers) != len(items):
        raise ValueError(f"{len(answers)} answers for {len(items)} questions")
    scores = [score(a, record, qa) for a, (record, qa) in zip(answers, items, strict=True)]
    qtypes = [t for t in QUOTAS if any(qa.qtype == t for _, qa in items)]

    def share(key: str, qtype: str | None = None) -> float:
        picked = [s[key] for s, (_, qa) in zip(scores, items, strict=True) if qtype in (None, qa.qtype)]
        return sum(picked) / len(picked)

    return {
        "consistent": share("consistent"),
        "consistent_by_type": {qtype: share("consistent", qtype) for qtype in qtypes},
        "strict": share("strict"),
        "strict_by_type": {qtype: share("strict", qtype) for qtype in qtypes},
        "answers": [
            {
                "question": qa.question,
                "qtype": qa.qtype,
                "attribute": qa.attribute,
                "truth": record.attributes[qa.attribute],
                "answer": a,
                **s,
            }
            for a, s, (record, qa) in zip(answers, scores, items, strict=True)
        ],
    }
