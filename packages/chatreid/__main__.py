import sys

from ireid.chatreid.train_cli import main

sys.exit(main())
