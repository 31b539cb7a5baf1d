"""`ireid data build-interactive`: LLaVA-ReID's Interactive-PEDES construction over any converted data set.

ireid data build-interactive --data D --out O --vlm SOURCE [--llm smollm2 | openai:URL#MODEL] [--splits train test]
    [--max-records N] [--batch-size 16] [--timeout-s 60] [--max-retries 3] [--max-workers 8]

SOURCE is the model that captions the images (step 1): `chatreid:<checkpoint>`, `openai:<base_url>#<model>` (a vision
server such as vLLM or SGLang), or `annotated` (each record's own initial and fine descriptions: steps 2 and 3 alone;
on a synthetic world this uses ground truth). Records already written are skipped on a rerun, and model replies
are cached in the output folder, so a stopped run resumes where it stopped. `build.json` says whether the run
finished (`complete`), what was asked, every skipped record or Q&A pair by key, and, on a synthetic world, how
consistent the generated text is with the true attributes.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from ireid.app.vision_models import ANNOTATED, vision_model
from ireid.core.converters.common import PNG_MAGIC
from ireid.core.interactive_pedes.construction import ConstructionSettings, InteractivePedesBuilder, consistency
from ireid.core.llm import OPENAI_PREFIX, ServerSettings, load_chat_llm
from ireid.core.loader import load_records, undecoded_samples
from ireid.core.records import QA_TYPES, Record
from ireid.core.reply_cache import ReplyCache
from ireid.core.shards import MANIFEST_SUFFIX, ShardWriter, atomic_write_json

SUMMARY = "build.json"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="the converted data set (shard folder)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the built data set; a rerun resumes")
    parser.add_argument(
        "--vlm", required=True, help="step 1's captioner: chatreid:<ckpt> | openai:URL#MODEL | annotated"
    )
    parser.add_argument(
        "--llm", default="smollm2", help="steps 2 and 3: smollm2 | openai:URL#MODEL | a local LM folder"
    )
    parser.add_argument("--splits", nargs="+", help="splits to build (default: every split of --data)")
    parser.add_argument("--max-records", type=int, help="build only the first N records of each split")
    parser.add_argument("--batch-size", type=int, default=16, help="records per batch of model calls")
    parser.add_argument("--attempts", type=int, default=2, help="tries per model output before it is skipped")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="openai: seconds per request")
    parser.add_argument("--max-retries", type=int, default=3, help="openai: attempts per request")
    parser.add_argument("--max-workers", type=int, default=8, help="openai: concurrent requests")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _splits(data: Path, chosen: list[str] | None) -> list[str]:
    found = sorted(p.name.removesuffix(MANIFEST_SUFFIX) for p in data.glob(f"*{MANIFEST_SUFFIX}"))
    if not found:
        raise ValueError(f"{data}: no shards (no *{MANIFEST_SUFFIX}): convert the data set first (ireid data convert)")
    missing = sorted(set(chosen or ()) - set(found))
    if missing:
        raise ValueError(f"{data}: no split {missing}; it has {found}")
    return chosen or found


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def summarise(records: list[Record]) -> dict[str, Any]:
    """What the built data set holds (read back, so a resumed run counts every record): the question mix, the
    share of yes/no questions answered Yes, and (synthetic world) the shares of generated text stating true values."""
    qtypes = Counter(qa.qtype for r in records for qa in r.qas)
    yes_no = [qa for r in records for qa in r.qas if qa.qtype == "yes_no"]
    truth: Counter[str] = Counter()
    for record in records:
        if record.attributes:
            truth.update(consistency(record))
    out: dict[str, Any] = {
        "qas_per_record": round(sum(qtypes.values()) / max(len(records), 1), 2),
        "question_mix_percent": {t: _percent(qtypes[t], sum(qtypes.values())) for t in QA_TYPES},
        "yes_no_answered_yes_percent": _percent(sum(qa.answer.lower().startswith("yes") for qa in yes_no), len(yes_no)),
    }
    if truth:
        out["consistency_percent"] = {
            **{
                kind: {
                    "stating_an_attribute": _percent(truth[f"{kind}_stating"], truth[kind]),
                    "only_true_values": _percent(truth[f"{kind}_true"], truth[f"{kind}_stating"]),
                }
                for kind in ("sub_captions", "answers")
            },
            "yes_no_assumption_matches_answer": _percent(truth["yes_no_as_answered"], truth["yes_no_assuming"]),
        }
    return out


def run(args: argparse.Namespace) -> int:
    data, out = args.data, args.out
    if args.batch_size < 1 or (args.max_records is not None and args.max_records < 0):
        raise ValueError("--batch-size must be at least 1 and --max-records at least 0")
    splits = _splits(data, args.splits)
    out.mkdir(parents=True, exist_ok=True)
    server = ServerSettings(timeout_s=args.timeout_s, max_retries=args.max_retries, max_workers=args.max_workers)
    http = dataclasses.asdict(server) if args.llm.startswith(OPENAI_PREFIX) else {}
    builder = InteractivePedesBuilder(
        load_chat_llm(args.llm, **http),
        ReplyCache(out / "llm.cache.jsonl", args.llm),
        None if args.vlm == ANNOTATED else vision_model(args.vlm, server),
        None if args.vlm == ANNOTATED else ReplyCache(out / "vlm.cache.jsonl", args.vlm),
        ConstructionSettings(attempts=args.attempts),
    )
    settings = {"data": str(data), "vlm": args.vlm, "llm": args.llm, "splits": splits, "max_records": args.max_records}
    summary: dict[str, Any] = {**settings, "complete": False}
    atomic_write_json(out / SUMMARY, summary)
    written: dict[str, int] = {}
    start = time.perf_counter()
    for split in splits:
        samples = undecoded_samples(data, split)[: args.max_records]
        with ShardWriter(out, split, resume=True) as writer:
            batches = range(0, len(samples), args.batch_size)
            for begin in tqdm(batches, desc=f"build-interactive {split}", unit="batch", disable=args.quiet):
                batch = [s for s in samples[begin : begin + args.batch_size] if s.key not in writer.written_keys]
                if not batch:
                    continue
                images = [None if args.vlm == ANNOTATED else Image.open(io.BytesIO(s.image)) for s in batch]  # type: ignore[arg-type]
                for sample, built in zip(batch, builder.build([s.record for s in batch], images), strict=True):
                    if built is not None:
                        image = sample.image
                        writer.write(built, image, "png" if image.startswith(PNG_MAGIC) else "jpg")  # type: ignore[union-attr]
            written[split] = writer.count
    records = [r for split in splits if written[split] for r in load_records(out, split)]
    seconds = time.perf_counter() - start
    built_now = builder.counts["records_built"]
    summary.update(
        complete=True,
        records_written=written,
        model_calls={"llm": builder.llm_cache.asked, "vlm": builder.vlm_cache.asked if builder.vlm_cache else 0},
        counts=dict(sorted(builder.counts.items())),
        skipped=builder.skipped,
        seconds=round(seconds, 1),
        records_per_minute=round(60 * built_now / max(seconds, 1e-9), 1),
        **summarise(records),
    )
    atomic_write_json(out / SUMMARY, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "skipped"}, indent=1))
    print(f"skipped: {len(builder.skipped)} (records and Q&A pairs, by key, in {out / SUMMARY})")
    return 0
