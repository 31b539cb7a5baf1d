"""`ireid chatreid`: ChatReID's instruction data, its Re-ID evaluation (paper §4.1) and questions about a small gallery.

ireid chatreid build-instructions ...      the instruction data engine (ireid.chatreid.instructions_cli)
ireid chatreid mine-look-alikes --retriever-ckpt R --data D --out F   each image's closest other people (stage 2 option)
ireid chatreid eval --task standard text-to-image --model-ckpt M --retriever-ckpt R --data D [--tau] [--max-queries]
ireid chatreid ask --model-ckpt M --images a.jpg b.jpg --text "Is the person in both images the same?"
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from ireid.chatreid import instructions_cli
from ireid.chatreid.eval_tasks import TASKS, TaskDataError, build_task
from ireid.chatreid.evaluation import MatchScorer, TaskResult, evaluate_task, format_table
from ireid.chatreid.inference import ChatReID
from ireid.chatreid.look_alikes import look_alikes_from_gallery, save_look_alikes
from ireid.core.gallery import encode_split
from ireid.core.images import ImageStore
from ireid.core.loader import iter_samples
from ireid.core.shards import ShardError, atomic_write_json
from ireid.retriever.inference import ModuleRetriever


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `chatreid` command group to the top-level CLI."""
    group = subparsers.add_parser(
        "chatreid", help="ChatReID: instruction data, Re-ID evaluation, questions about images"
    )
    commands = group.add_subparsers(dest="chatreid_command", required=True)
    build = commands.add_parser(
        "build-instructions", help="build the three stages' instruction conversations from an image data set"
    )
    instructions_cli.configure(build)
    build.set_defaults(run=instructions_cli.run)
    mine = commands.add_parser(
        "mine-look-alikes", help="each image's closest other people by a retriever, for stage 2's distractors"
    )
    configure_mine(mine)
    mine.set_defaults(run=run_mine)
    evaluate = commands.add_parser("eval", help="Re-ID tasks: retriever filter, then ChatReID ranks (paper §4.1)")
    configure_eval(evaluate)
    evaluate.set_defaults(run=run_eval)
    ask = commands.add_parser("ask", help="ask ChatReID a free-form question about a few images")
    configure_ask(ask)
    ask.set_defaults(run=run_ask)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# ------------------------------------------------------------------------------------------------ mine-look-alikes


def configure_mine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retriever-ckpt", type=Path, required=True, help="retriever checkpoint that ranks the images")
    parser.add_argument("--data", type=Path, required=True, help="image data set (shard folder)")
    parser.add_argument("--split", default="train", help="the split the instructions are built from (default train)")
    parser.add_argument("--top-k", type=int, default=20, help="look-alikes kept per image (default 20)")
    parser.add_argument("--out", type=Path, required=True, help="look-alike file (JSON)")


def run_mine(args: argparse.Namespace) -> int:
    if not args.retriever_ckpt.is_file():
        return _fail(f"--retriever-ckpt {args.retriever_ckpt}: no such file")
    if not args.data.is_dir():
        return _fail(f"--data {args.data}: no such folder")
    try:
        count = mine_look_alikes(args.retriever_ckpt, args.data, args.split, args.top_k, args.out)
    except (ShardError, ValueError) as error:
        return _fail(str(error))
    print(f"look-alikes of {count} images: {args.out}")
    return 0


def mine_look_alikes(retriever_ckpt: Path, data: Path, split: str, top_k: int, out: Path) -> int:
    """Write the look-alike file of `data`'s `split` by the retriever's image embeddings; returns the image count."""
    found = look_alikes_from_gallery(encode_split(ModuleRetriever.from_checkpoint(retriever_ckpt), data, split), top_k)
    save_look_alikes(out, found, top_k, {"retriever_ckpt": str(retriever_ckpt), "data": str(data), "split": split})
    return len(found)


# ---------------------------------------------------------------------------------------------------------- eval


def configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", nargs="+", required=True, choices=TASKS, help="one or more Re-ID tasks")
    parser.add_argument("--model-ckpt", type=Path, required=True, help="ChatReID checkpoint (stage 3)")
    parser.add_argument("--retriever-ckpt", type=Path, required=True, help="retriever checkpoint: the filter")
    parser.add_argument("--data", type=Path, required=True, help="image data set (shard folder)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--tau", type=float, default=0.0, help="keep gallery images with cosine similarity above τ")
    parser.add_argument("--max-candidates", type=int, default=20, help="at most this many kept per query")
    parser.add_argument("--max-queries", type=int, help="evenly spaced subset of the queries")
    parser.add_argument(
        "--direction", choices=("visible-to-infrared", "infrared-to-visible"), default="visible-to-infrared",
        help="visible-infrared: which modality queries",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8, help="query-candidate pairs per model forward")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--out", type=Path, default=Path("runs/chatreid/eval.json"), help="JSON results")


def run_eval(args: argparse.Namespace) -> int:
    for name, path in (("--model-ckpt", args.model_ckpt), ("--retriever-ckpt", args.retriever_ckpt)):
        if not path.is_file():
            return _fail(f"{name} {path}: no such file")
    if not args.data.is_dir():
        return _fail(f"--data {args.data}: no such folder")
    try:
        results = evaluate_checkpoint(
            args.model_ckpt,
            args.retriever_ckpt,
            args.data,
            args.task,
            split=args.split,
            direction=args.direction,
            max_queries=args.max_queries,
            tau=args.tau,
            max_candidates=args.max_candidates,
            batch_size=args.batch_size,
            device=args.device or _default_device(),
            report=lambda result: print(format_table(result) + f"\n({result.wall_s:.1f} s)\n", flush=True),
        )
    except TaskDataError as error:
        return _fail(str(error))
    atomic_write_json(
        args.out,
        {
            "model_ckpt": str(args.model_ckpt),
            "retriever_ckpt": str(args.retriever_ckpt),
            "data": str(args.data),
            "split": args.split,
            "direction": args.direction,
            "tasks": {task: result.to_dict() for task, result in results.items()},
        },
    )
    print(f"wrote {args.out}")
    return 0


def evaluate_checkpoint(
    model_ckpt: Path,
    retriever_ckpt: Path,
    data: Path,
    tasks: Sequence[str],
    *,
    batch_size: int = 8,
    device: str = "cpu",
    **settings: Any,
) -> dict[str, TaskResult]:
    """§4.1 for each task on `data`: the retriever filters, the ChatReID checkpoint ranks the kept images
    (`settings`: those of `evaluate_scorer`)."""

    def model() -> MatchScorer:
        return ChatReID.from_checkpoint(model_ckpt, device=device, batch_size=batch_size)

    return evaluate_scorer(model, retriever_ckpt, data, tasks, **settings)


def evaluate_scorer(
    scorer: Callable[[], MatchScorer],
    retriever_ckpt: Path,
    data: Path,
    tasks: Sequence[str],
    *,
    split: str = "test",
    direction: str = "visible-to-infrared",
    max_queries: int | None = None,
    tau: float = 0.0,
    max_candidates: int = 20,
    report: Callable[[TaskResult], None] | None = None,
) -> dict[str, TaskResult]:
    """§4.1 for each task on `data`'s `split` with any match scorer, made by `scorer()` once the tasks are built.

    Raises `TaskDataError` (naming the data set) when a task's queries or gallery cannot be built from it.
    """
    records, encoded = [], {}
    for sample in iter_samples(data, split, decode_images=False):
        records.append(sample.record)
        encoded[sample.key] = sample.image
    where = f"{data} ({split} split)"
    built = [build_task(t, records, direction=direction, max_queries=max_queries, where=where) for t in tasks]  # type: ignore[arg-type]
    images = ImageStore(encoded, where=where)
    retriever = ModuleRetriever.from_checkpoint(retriever_ckpt)
    model = scorer()
    results = {}
    for task_data in built:
        results[task_data.task] = evaluate_task(
            task_data, images, retriever, model, tau=tau, max_candidates=max_candidates
        )
        if report is not None:
            report(results[task_data.task])
    return results


# ----------------------------------------------------------------------------------------------------------- ask


def configure_ask(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-ckpt", type=Path, required=True, help="ChatReID checkpoint")
    parser.add_argument("--images", type=Path, nargs="+", required=True, help="image files, shown in this order")
    parser.add_argument("--text", required=True, help="the question")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")


def read_images(paths: Sequence[Path]) -> list[Image.Image]:
    """The given files decoded to RGB; a missing or unreadable file is a ValueError naming it."""
    images = []
    for path in paths:
        if not path.is_file():
            raise ValueError(f"image {path}: no such file")
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"image {path}: cannot be read as an image ({error})") from error
    return images


def run_ask(args: argparse.Namespace) -> int:
    if not args.text.strip():
        return _fail("--text is empty")
    if not args.model_ckpt.is_file():
        return _fail(f"--model-ckpt {args.model_ckpt}: no such file")
    try:
        images = read_images(args.images)
    except ValueError as error:
        return _fail(str(error))
    model = ChatReID.from_checkpoint(args.model_ckpt, device=args.device or _default_device())
    print(model.ask(images, args.text, max_new_tokens=args.max_new_tokens))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`ireid chatreid ...` on its own (the same commands the `ireid` CLI registers)."""
    parser = argparse.ArgumentParser(prog="ireid")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
