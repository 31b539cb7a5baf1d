import sys

from ireid.answerer.tune_cli import main

if sys.argv[1:2] != ["tune"]:
    sys.exit("usage: python -m ireid.answerer tune --config CONFIG.yaml [--ckpt_path last] [LightningCLI options]")
sys.exit(main(sys.argv[2:]))
