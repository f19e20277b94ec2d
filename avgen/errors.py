"""What a user error is, decided once: bad input that the user can fix, reported as one line.

Library code raises these for input it cannot use (a setting, a file, a path, data); every console script turns a
`UserError` into `error: <first line>` and exit code 2 (avgen/cli/common.py), and lets anything else — a bug —
raise with its traceback. The subclasses keep the built-in type that callers already catch.
"""

from __future__ import annotations


class UserError(Exception):
    """Input the user can fix; the message names the key, file or path and what to change."""


class InputError(UserError, ValueError):
    """A value (setting, argument, file content) that cannot work."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or directory the user named, or that avgen looks for, does not exist."""


class DataError(UserError, RuntimeError):
    """The user's data cannot be used as a whole (for example too many unreadable files)."""


class DivergedError(UserError, FloatingPointError):
    """Training produced non-finite values; the last good checkpoint is kept."""


class MissingDependencyError(UserError, ImportError):
    """An optional package that a chosen component needs is not installed; the message names the extra."""
