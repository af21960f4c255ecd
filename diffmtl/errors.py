"""The one error type for mistakes a user can fix (config, data, files, checkpoints).

main.py prints its message as one line and exits with status 2; anything else is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """A problem in the user's input; the message names it and says how to fix it."""
