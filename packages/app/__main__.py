import sys

from ireid.app.cli import main

sys.exit(main())
