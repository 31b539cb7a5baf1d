import sys

from ireid.questioner.cli import main

sys.exit(main())
