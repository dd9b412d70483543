"""The one exception type for mistakes a user can make (bad flag, bad spec, missing data).

The CLI turns it into a single stderr line and exit code 2; every other exception is a bug and keeps its
traceback. Messages name the field, the value received and the fix.
"""


class UserError(ValueError):
    """A mistake in user input; ``str(err)`` is the one line shown to the user."""
