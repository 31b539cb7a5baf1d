import sys

from ireid.vlm_reid.train_cli import main

sys.exit(main())
