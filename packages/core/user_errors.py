"""Command-line entry points end a user's mistake (a missing file, a bad field, a server that is down) in one line.

The library raises errors that name the file and field; a command prints that message and exits with status 2
instead of a traceback. `IREID_TRACEBACK=1` re-raises, for debugging.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from ireid.core.llm import ChatServerError
from ireid.core.shards import ShardError

# ShardError: a folder that is not an ireid shard folder, or a shard that is corrupt (named with its split).
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, ChatServerError, ShardError)
TRACEBACK_VARIABLE = "IREID_TRACEBACK"

Main = TypeVar("Main", bound=Callable[..., int])


def one_line_errors(main: Main) -> Main:
    """Wrap a command's `main`: a `USER_ERRORS` exception becomes `error: <message>` on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapped(*args: object, **kwargs: object) -> int:
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as error:
            if os.environ.get(TRACEBACK_VARIABLE):
                raise
            print(f"error: {error} ({TRACEBACK_VARIABLE}=1 shows the traceback)", file=sys.stderr)
            return 2

    return wrapped  # type: ignore[return-value]
