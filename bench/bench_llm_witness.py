"""How often an LLM witness's answers agree with its memory: SmolLM2-135M-Instruct against the rule-based witness.

Questions: `--questions` annotated Q&A pairs (default 100: 40 descriptive, 40 yes/no, 20 multiple choice) of the
default synthetic world's test identities, at most one per record, drawn with `--seed`; questions under 15
characters are left out (both witnesses answer them "I don't know." by rule). Memory: the record's fine description.

Scoring: see SCORING (also written into the JSON).

Variants: the prompt layouts of `LLMWitness` ("user": the paper's single user message; "system": instruction and
memory as the system message, the question as the user message), zero-shot; and with `--adapter DIR [DIR ...]`
witnesses tuned on the data set's own Q&A (`python -m ireid.answerer tune`, loaded as `build_witness("tuned:DIR")`),
asked the same questions with the paper's layout. Seconds per answer: one batched `answer` call over all questions,
model loading excluded (reported apart). Both zero-shot layouts together take about 30 minutes on 2 CPU cores; a
tuned witness answers in one sentence and stops, so it takes a fraction of that.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchlib import write_result

from ireid.answerer import LLMWitness, RuleBasedWitness, build_witness
from ireid.answerer.consistency import QUOTAS, SCORING, consistency
from ireid.answerer.consistency import sample_questions as sample_scorable
from ireid.answerer.llm_witness import LAYOUTS
from ireid.answerer.tuned import read_witness_file
from ireid.core.llm import load_chat_llm
from ireid.core.protocols import Witness
from ireid.core.records import QA, Record
from ireid.core.synthetic.world import DEFAULTS, plan_identities, world_records


def sample_questions(count: int, seed: int) -> list[tuple[Record, QA]]:
    """`count` (record, QA) pairs of the default world's test split, split over the types by QUOTAS."""
    counts = {"ids_train": DEFAULTS["ids_train"], "ids_val": DEFAULTS["ids_val"], "ids_test": DEFAULTS["ids_test"]}
    test = [identity for identity in plan_identities(0, **counts) if identity.split == "test"]
    return sample_scorable(world_records(0, test, DEFAULTS["images_per_id"]), count, seed)


def evaluate(witness: Witness, items: list[tuple[Record, QA]]) -> dict[str, Any]:
    questions = [qa.question for _, qa in items]
    memories = [record.fine_description for record, _ in items]
    start = time.perf_counter()
    answers = witness.answer(questions, memories)
    seconds = time.perf_counter() - start
    return {**consistency(answers, items), "seconds_per_answer": seconds / len(items)}


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
    parser.add_argument("--layouts", nargs="*", default=list(LAYOUTS), choices=LAYOUTS, help="zero-shot layouts")
    parser.add_argument(
        "--adapter", type=Path, nargs="+", default=[], help="tuned witness folders, scored beside the zero-shot model"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    items = sample_questions(args.questions, args.seed)
    reference = evaluate(RuleBasedWitness(), items)
    print(summary("rule-based", reference), flush=True)
    load_seconds, variants = None, {}
    if args.layouts:
        start = time.perf_counter()
        llm = load_chat_llm(args.model, batch_size=args.batch_size)
        load_seconds = time.perf_counter() - start
    for layout in args.layouts:
        variants[layout] = evaluate(LLMWitness(llm, layout=layout), items)
        print(summary(f"{args.model} ({layout})", variants[layout]), flush=True)
    tuned = {}
    for folder in args.adapter:
        meta = read_witness_file(folder)
        start = time.perf_counter()
        witness = build_witness(f"tuned:{folder}", batch_size=args.batch_size)
        result = {"base": meta["base"], "training": meta["training"], "model_load_seconds": time.perf_counter() - start}
        tuned[str(folder)] = {**result, **evaluate(witness, items)}
        print(summary(f"tuned {folder} (user)", tuned[str(folder)]), flush=True)

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
            **({"tuned": tuned} if tuned else {}),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
