import sys

from ireid.selector.cli import main

sys.exit(main())
