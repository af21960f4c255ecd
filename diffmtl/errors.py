"""The one error type for mistakes a user can fix (config, data, files, checkpoints).

Command-line entry points run through `exit_on_user_error`, which prints its message as one
line and exits with status 2; anything else is a bug and keeps its traceback.
"""

import sys
from collections.abc import Callable
from typing import Any


class UserError(Exception):
    """A problem in the user's input; the message names it and says how to fix it."""


def exit_on_user_error(fn: Callable[..., Any], *args: Any) -> Any:
    """Returns fn(*args); on UserError prints `error: <message>` to stderr and exits 2."""
    try:
        return fn(*args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
