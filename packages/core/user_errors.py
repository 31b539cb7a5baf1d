"""Command-line entry points end a user's mistake (a missing file, a bad field, a server that is down) in one line.

The library raises errors that name the file and field; a command prints that message and exits with status 2
instead of a traceback. `--debug` anywhere on the command line (or `IREID_TRACEBACK=1`) re-raises, for debugging.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from ireid.core.llm import ChatServerError
from ireid.core.shards import ShardError

# ShardError: a folder that is not an ireid shard folder, or a shard that is corrupt (named with its split).
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, ChatServerError, ShardError)
TRACEBACK_VARIABLE = "IREID_TRACEBACK"
DEBUG_FLAG = "--debug"
ARGV_NAMES = ("argv", "args")  # the parameter of a command's main that holds its command line

Main = TypeVar("Main", bound=Callable[..., int])


def one_line_errors(main: Main) -> Main:
    """Wrap a command's `main`: a `USER_ERRORS` exception becomes `error: <message>` on stderr and exit status 2.

    `main` takes its command line as a parameter named `argv` or `args` (None: `sys.argv`); a `--debug` in it is
    taken out before `main` sees it and keeps the traceback instead.
    """
    signature = inspect.signature(main)
    argv_name = next((name for name in ARGV_NAMES if name in signature.parameters), None)

    @functools.wraps(main)
    def wrapped(*args: object, **kwargs: object) -> int:
        bound = signature.bind(*args, **kwargs)
        given = bound.arguments.get(argv_name) if argv_name else None
        argv = list(sys.argv[1:] if given is None else given)  # type: ignore[call-overload]
        debug = DEBUG_FLAG in argv or bool(os.environ.get(TRACEBACK_VARIABLE))
        if argv_name and DEBUG_FLAG in argv:
            bound.arguments[argv_name] = [a for a in argv if a != DEBUG_FLAG]
        try:
            return main(*bound.args, **bound.kwargs)
        except USER_ERRORS as error:
            if debug:
                raise
            print(f"error: {error} ({DEBUG_FLAG} shows the traceback)", file=sys.stderr)
            return 2

    return wrapped  # type: ignore[return-value]
