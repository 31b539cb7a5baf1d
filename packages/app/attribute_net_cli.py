"""`ireid attribute-net`: eyes that name attributes, for `expected-gain:reader` (`ireid.core.attribute_net`).

ireid attribute-net fit --data D --out F [--config C] [--steps N] [--minutes M] [--test-split val] [--seed 0]
ireid attribute-net test --data D --net F [--split test] [--out J]

`fit` trains the net on the training split's images and their annotated attributes (`configs/attribute_net/
synthetic.yaml`; TensorBoard logs and checkpoints under `F`'s stem + `-run/`, so a cut run resumes) and writes it
(weights-only) with its accuracy on `--test-split`; `test` scores a net on a split, per attribute, beside always
naming the commonest value. Both print one line per attribute.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ireid.app.attribute_net_pipeline import ATTRIBUTE_NET_CONFIG, train_attribute_net
from ireid.core.attribute_net import AttributeNet, accuracy, accuracy_summary, annotated_images
from ireid.core.shards import atomic_write_json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `attribute-net` command group to the top-level CLI."""
    group = subparsers.add_parser("attribute-net", help="a network that names attributes (expected-gain:reader)")
    commands = group.add_subparsers(dest="attribute_net_command", required=True)
    fit = commands.add_parser("fit", help="train it on a split's images and annotated attributes")
    fit.add_argument("--data", required=True, type=Path, help="data set with annotated attributes")
    fit.add_argument("--out", required=True, type=Path, help="the attribute net file")
    fit.add_argument("--config", type=Path, default=ATTRIBUTE_NET_CONFIG, help="LightningCLI YAML of the training")
    fit.add_argument("--test-split", default="val", help="split scored per attribute after training")
    fit.add_argument("--steps", type=int, help="batches (default: the config's, 1200 of 64: about 200 s on 2 cores)")
    fit.add_argument("--minutes", type=float, help="stop earlier once this much time has passed")
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(run=run_fit)
    test = commands.add_parser("test", help="its accuracy per attribute on a split")
    test.add_argument("--data", required=True, type=Path)
    test.add_argument("--net", required=True, type=Path, help="an attribute net file")
    test.add_argument("--split", default="test")
    test.add_argument("--out", type=Path, help="JSON file of the accuracies")
    test.set_defaults(run=run_test)


def show(split: str, result: dict[str, Any]) -> None:
    for name, s in result["attributes"].items():
        print(f"{name}: {100 * s['accuracy']:.1f} % (commonest value {100 * s['majority']:.1f} %)")
    mean, majority = 100 * result["mean_accuracy"], 100 * result["mean_majority"]
    print(f"{split}: mean {mean:.1f} % (commonest value {majority:.1f} %)")


def run_fit(args: argparse.Namespace) -> int:
    result = train_attribute_net(args.data, args.out, args.config, args.steps, args.minutes, args.seed,
                                 args.test_split)  # fmt: skip
    show(args.test_split, result)
    print(f"{result['steps']} steps in {result['seconds']:.0f} s -> {args.out}")
    return 0


def run_test(args: argparse.Namespace) -> int:
    result = accuracy_summary(accuracy(AttributeNet.load(args.net), *annotated_images(args.data, args.split)))
    if args.out:
        atomic_write_json(args.out, {"data": str(args.data), "net": str(args.net), "split": args.split, **result})
    show(args.split, result)
    return 0
