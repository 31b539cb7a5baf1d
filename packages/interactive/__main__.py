import sys

from ireid.interactive.cli import main

sys.exit(main())
