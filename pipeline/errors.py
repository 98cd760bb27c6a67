"""The one error type for a user's mistake: a path, a flag, a recipe value, credentials.

The `tokenmill` command catches it once and prints its message as one line with exit status 2, before
any Spark job starts where the mistake can be seen that early. Any other exception is a bug in tokenmill
and keeps its traceback. The message says what is wrong and how to fix it.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake the user can fix; its message is the whole explanation."""
