"""The one error type for mistakes a user can fix (config, data, files, checkpoints).

Command-line entry points run through `exit_on_user_error`, which prints its message as one
line and exits with status 2; anything else is a bug and keeps its traceback.
"""

import sys
from collections.abc import Callable
from typing import Any


class UserError(ValueError):
    """A problem in the user's input; the message names it and says how to fix it.

    A ValueError, so a library caller (a notebook) can catch it conventionally.
    """


def exit_on_user_error(fn: Callable[..., Any], *args: Any) -> Any:
    """Returns fn(*args); on UserError prints `error: <message>` to stderr and exits 2."""
    try:
        return fn(*args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def require(ok: bool, message: str) -> None:
    """Raises UserError(message) unless ok."""
    if not ok:
        raise UserError(message)


def require_one_of(value, allowed, field: str) -> None:
    """Raises UserError naming `field` unless value is one of `allowed`."""
    require(value in allowed, f"{field}={value!r} is unknown; use one of {list(allowed)}")
