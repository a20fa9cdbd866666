"""The project's error for unusable input: a file or value the user handed us.

The command line (``train.py``) catches :class:`BadInputError` in one place and prints its
message as one line, ``train.py: error: <message>``, with exit code 2; library callers get the
exception. The message names the file (or the key) and says what is wrong and what is allowed.
"""

from __future__ import annotations


class BadInputError(ValueError):
    """A file or value is malformed, truncated, empty, foreign or refused; the message names it
    and says what is allowed. A ``ValueError``, so ``except ValueError`` still catches it."""


class MissingInputError(BadInputError, FileNotFoundError):
    """A file or folder the user named does not exist (also a ``FileNotFoundError``)."""
