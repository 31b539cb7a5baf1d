"""`ireid serve`: the investigator app, a web page in which a person searches person images by talking.

ireid serve [--gallery FOLDER | --data SHARDS [--split test]] [--retriever-ckpt R] [--questioner Q | --strategy S]
    [--eval-config C] [--index-dir D] [--top-k 12] [--host 127.0.0.1] [--port 8765]

With no gallery and no checkpoints it serves what `make demo` trained (`--demo`, default runs/demo): the default
world's test gallery, the demo's retriever and its LLaVA-ReID questioner. The server binds 127.0.0.1 unless
`--host` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ireid.app.investigator.gallery import SearchGallery, index_folder, split_gallery
from ireid.app.investigator.server import create_app
from ireid.app.investigator.session import Investigator, InvestigatorSettings
from ireid.app.stages import REPO_CONFIGS
from ireid.app.strategies import build_strategy
from ireid.interactive.config import EvalConfig, load_config
from ireid.retriever.inference import ModuleRetriever

DEMO_CONFIG = Path("eval") / "config.json"  # what `ireid demo` evaluated with: data, retriever, questioner


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--gallery", type=Path, help="a folder of person images (searched recursively)")
    source.add_argument("--data", type=Path, help="a shard folder; its --split is the gallery")
    parser.add_argument("--split", default="test")
    parser.add_argument("--retriever-ckpt", type=Path, help="the retriever (default: the demo's)")
    parser.add_argument("--questioner", type=Path, help="a trained LLaVA-ReID questioner checkpoint")
    parser.add_argument("--attribute-net", type=Path, help="eyes that name attributes (`ireid attribute-net fit`): "
                        "questions from expected-gain:reader unless --strategy names another")  # fmt: skip
    parser.add_argument("--strategy", help="the question strategy (default: expected-gain:reader with an attribute "
                        "net, else llava-reid with a questioner, else expected-gain); any of `ireid eval "
                        "interactive`'s that needs no ground truth")  # fmt: skip
    parser.add_argument("--eval-config", type=Path, help="strategy settings (default: the demo's, else "
                        "configs/interactive/synthetic.yaml)")  # fmt: skip
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="where `make demo` wrote its run")
    parser.add_argument("--index-dir", type=Path, help="where a folder's index is kept (default: FOLDER.ireid-index)")
    parser.add_argument("--top-k", type=int, default=12, help="candidates shown")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--quiet", action="store_true", help="no progress bar while indexing")


def resolve(args: argparse.Namespace) -> tuple[EvalConfig, str]:
    """The strategy settings, with the data, retriever and questioner the flags or the demo name; and the strategy."""
    demo_config = args.demo / DEMO_CONFIG
    uses_demo = args.gallery is None and args.data is None
    if args.eval_config is not None:
        config = load_config(args.eval_config)
    elif demo_config.is_file():
        config = load_config(demo_config)
    else:
        config = load_config(REPO_CONFIGS / "interactive" / "synthetic.yaml")
    if uses_demo and not demo_config.is_file():
        raise ValueError(f"no gallery given and no demo run at {args.demo}: run `make demo` first, or pass --gallery "
                         "FOLDER --retriever-ckpt RETRIEVER.ckpt")  # fmt: skip
    if args.data is not None:
        config = dataclasses.replace(config, data_dir=str(args.data), split=args.split)
    if args.retriever_ckpt is not None:
        config = dataclasses.replace(config, retriever_ckpt=str(args.retriever_ckpt))
    elif not uses_demo and not demo_config.is_file():
        raise ValueError("--retriever-ckpt: name the retriever that encodes the gallery and the dialogue")
    if args.questioner is not None:
        llava_reid = dataclasses.replace(config.llava_reid, questioner_ckpt=str(args.questioner))
        config = dataclasses.replace(config, llava_reid=llava_reid)
    if args.attribute_net is not None:
        if not args.attribute_net.is_file():
            raise ValueError(f"--attribute-net {args.attribute_net}: not found")
        config = dataclasses.replace(
            config, expected_gain=dataclasses.replace(config.expected_gain, reader=str(args.attribute_net))
        )
    default = "llava-reid" if config.llava_reid.questioner_ckpt else "expected-gain"
    strategy = args.strategy or ("expected-gain:reader" if args.attribute_net is not None else default)
    return config, strategy


def build_investigator(args: argparse.Namespace) -> Investigator:
    config, strategy_name = resolve(args)
    if not Path(config.retriever_ckpt).is_file():
        raise ValueError(f"retriever checkpoint {config.retriever_ckpt}: not found")
    retriever = ModuleRetriever.from_checkpoint(config.retriever_ckpt)
    gallery: SearchGallery
    if args.gallery is not None:
        gallery = index_folder(args.gallery, retriever, config.retriever_ckpt, args.index_dir, progress=not args.quiet)
        if gallery.skipped:
            print(f"{gallery.skipped} undecodable image(s) left out of the gallery")
    else:
        gallery = split_gallery(config.data_dir, config.split, retriever)
    strategy = build_strategy(strategy_name, config, gallery.images)
    if strategy.uses_ground_truth:
        raise ValueError(f"strategy {strategy_name!r} reads the gallery's annotations: an investigator has none")
    return Investigator(gallery, retriever, strategy, InvestigatorSettings(top_k=args.top_k, seed=config.seed))


def run(args: argparse.Namespace) -> int:
    import uvicorn

    investigator = build_investigator(args)
    print(f"{len(investigator.gallery)} images from {investigator.gallery.source}; questions: "
          f"{investigator.strategy.name}; open http://{args.host}:{args.port}/ (API: /docs)")  # fmt: skip
    uvicorn.run(create_app(investigator), host=args.host, port=args.port, log_level="warning")
    return 0
