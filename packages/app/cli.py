"""The `ireid` command: data, look-forward targets, evaluation, ChatReID, ICL, the visual witness, the attribute
net, the investigator app and the demo.

Each trainable package keeps its own LightningCLI program (`python -m ireid.<package> fit`).
"""

from __future__ import annotations

import argparse
import sys

from ireid.app import (
    attribute_net_cli,
    chatreid_cli,
    data_cli,
    demo,
    eval_cli,
    icl_cli,
    learning_cli,
    lookforward_cli,
    selection_cli,
    serve_cli,
    witness_cli,
)
from ireid.core.user_errors import one_line_errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ireid", description="Interactive person re-identification toolkit.")
    commands = parser.add_subparsers(dest="command", required=True)
    data_cli.register(commands)
    evaluate = commands.add_parser("eval", help="evaluate systems")
    eval_commands = evaluate.add_subparsers(dest="eval_command", required=True)
    interactive = eval_commands.add_parser(
        "interactive", help="question strategies against a witness, scored after every round"
    )
    eval_cli.configure(interactive)
    interactive.set_defaults(run=eval_cli.run)
    selection = eval_commands.add_parser(
        "selection", help="LLaVA-ReID Table 3: candidate rules and question targets of the llava-reid questioner"
    )
    selection_cli.configure(selection)
    selection.set_defaults(run=selection_cli.run)
    similarity = eval_commands.add_parser(
        "similarity", help="a base T-ReID model's initial-description similarities, saved for --rerank-scores"
    )
    eval_cli.configure_similarity(similarity)
    similarity.set_defaults(run=eval_cli.run_similarity)
    learning = eval_commands.add_parser(
        "learning", help="each learned part against its non-learned twins, mean ± sd over world seeds"
    )
    learning_cli.configure(learning)
    learning.set_defaults(run=learning_cli.run)
    targets = commands.add_parser(
        "lookforward", help="build the questioner's training targets by one-step looking-forward (LLaVA-ReID Eq. 9)"
    )
    lookforward_cli.configure(targets)
    targets.set_defaults(run=lookforward_cli.run)
    chatreid_cli.register(commands)
    icl_cli.register(commands)
    witness_cli.register(commands)
    attribute_net_cli.register(commands)
    serve = commands.add_parser("serve", help="the investigator app: search person images by talking, in a web page")
    serve_cli.configure(serve)
    serve.set_defaults(run=serve_cli.run)
    demo_parser = commands.add_parser("demo", help="run the main job end to end on the embedded defaults")
    demo.configure(demo_parser)
    demo_parser.set_defaults(run=demo.run)
    return parser


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
