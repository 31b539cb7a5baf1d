"""How often an LLM witness's answers agree with its memory: SmolLM2-135M-Instruct against the rule-based witness.

Questions: `--questions` annotated Q&A pairs (default 100: 40 descriptive, 40 yes/no, 20 multiple choice) of the
default synthetic world's test identities, at most one per record, drawn with `--seed`; questions under 15
characters are left out (both witnesses answer them "I don't know." by rule). Memory: the record's fine description.

Scoring: see SCORING (also written into the JSON).

Variants: the prompt layouts of `LLMWitness` ("user": the paper's single user message; "system": instruction and
memory as the system message, the question as the user message). Seconds per answer: one batched `answer` call over
all questions, model loading excluded (reported apart). Both layouts together take about 30 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import random
import re
import time
from pathlib import Path
from typing import Any

from benchlib import write_result

from ireid.answerer import LLMWitness, RuleBasedWitness
from ireid.answerer.llm_witness import LAYOUTS
from ireid.core.llm import load_chat_llm
from ireid.core.protocols import Witness
from ireid.core.records import QA, Record
from ireid.core.synthetic.parse import parse_description
from ireid.core.synthetic.world import DEFAULTS, plan_identities, world_records

QUOTAS = {"descriptive": 0.4, "yes_no": 0.4, "multiple_choice": 0.2}
SCORING = (
    "An answer is consistent when parse_description(answer) gives the record's value for the asked attribute. "
    "A yes/no answer is also consistent when it states no value for that attribute and its first word has the "
    "right polarity ('Yes' when the question's assumption is true, 'No' when it is false). 'strict' additionally "
    "fails yes/no answers whose first word is 'Yes'/'No' with the wrong polarity, whatever value they state."
)
_FIRST_WORD = re.compile(r"^\W*(\w+)")


def sample_questions(count: int, seed: int) -> list[tuple[Record, QA]]:
    """`count` (record, QA) pairs of the default world's test split, split over the types by QUOTAS."""
    counts = {"ids_train": DEFAULTS["ids_train"], "ids_val": DEFAULTS["ids_val"], "ids_test": DEFAULTS["ids_test"]}
    test = [identity for identity in plan_identities(0, **counts) if identity.split == "test"]
    records = world_records(0, test, DEFAULTS["images_per_id"])
    rng = random.Random(seed)
    rng.shuffle(records)
    wanted = {qtype: round(share * count) for qtype, share in QUOTAS.items()}
    wanted["descriptive"] += count - sum(wanted.values())
    chosen = []
    for record in records:
        open_types = [t for t, n in wanted.items() if n > 0]
        pool = [qa for qa in record.qas if qa.qtype in open_types]
        if not pool:
            continue
        qa = rng.choice(pool)
        wanted[qa.qtype] -= 1
        chosen.append((record, qa))
        if len(chosen) == count:
            return chosen
    raise ValueError(f"the default world's test split has too few questions for {count} ({wanted} missing)")


def polarity(answer: str) -> str | None:
    match = _FIRST_WORD.match(answer)
    word = match.group(1).lower() if match else ""
    return word if word in ("yes", "no") else None


def score(answer: str, record: Record, qa: QA) -> dict[str, bool]:
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


def evaluate(witness: Witness, items: list[tuple[Record, QA]]) -> dict[str, Any]:
    questions = [qa.question for _, qa in items]
    memories = [record.fine_description for record, _ in items]
    start = time.perf_counter()
    answers = witness.answer(questions, memories)
    seconds = time.perf_counter() - start
    scores = [score(a, record, qa) for a, (record, qa) in zip(answers, items, strict=True)]

    def share(key: str, qtype: str | None = None) -> float:
        picked = [s[key] for s, (_, qa) in zip(scores, items, strict=True) if qtype in (None, qa.qtype)]
        return sum(picked) / len(picked)

    return {
        "consistent": share("consistent"),
        "consistent_by_type": {qtype: share("consistent", qtype) for qtype in QUOTAS},
        "strict": share("strict"),
        "strict_by_type": {qtype: share("strict", qtype) for qtype in QUOTAS},
        "seconds_per_answer": seconds / len(items),
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


def summary(name: str, result: dict[str, Any]) -> str:
    by_type = ", ".join(f"{t} {v:.0%}" for t, v in result["consistent_by_type"].items())
    return (
        f"{name}: consistent {result['consistent']:.0%} ({by_type}), strict {result['strict']:.0%}, "
        f"{result['seconds_per_answer']:.2f} s/answer"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", help="chat LLM source (see ireid.core.llm.load_chat_llm)")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    items = sample_questions(args.questions, args.seed)
    reference = evaluate(RuleBasedWitness(), items)
    print(summary("rule-based", reference), flush=True)
    start = time.perf_counter()
    llm = load_chat_llm(args.model, batch_size=args.batch_size)
    load_seconds = time.perf_counter() - start
    variants = {}
    for layout in args.layouts:
        variants[layout] = evaluate(LLMWitness(llm, layout=layout), items)
        print(summary(f"{args.model} ({layout})", variants[layout]), flush=True)

    write_result(
        "llm_witness",
        {
            "config": {
                "model": args.model,
                "questions": args.questions,
                "seed": args.seed,
                "type_quotas": QUOTAS,
                "batch_size": args.batch_size,
                "max_new_tokens": 40,
                "memory": "fine description (the LLM witness tells it as 'You saw ...')",
            },
            "scoring": SCORING,
            "model_load_seconds": load_seconds,
            "rule_based": reference,
            "llm": variants,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
