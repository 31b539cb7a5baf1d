import sys

from ireid.retriever.cli import main

sys.exit(main())
