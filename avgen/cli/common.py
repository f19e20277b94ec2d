"""What every entry point shares: user errors (avgen.errors.UserError, configuration mistakes) become one line and
exit code 2 instead of a traceback; anything else is a bug and raises."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from avgen.errors import UserError

# avgen/conf/ ships inside the package (package data), so checkouts, editable and wheel installs find the same files
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def user_message(e: BaseException) -> str | None:
    """The one-line message for a user error, or None when `e` is not one (a bug)."""
    if isinstance(e, InstantiationException) and e.__cause__ is not None:  # raised inside a config's _target_
        return user_message(e.__cause__)
    if isinstance(e, MissingMandatoryValue):
        return f"{e.full_key} is required: add {e.full_key}=... to the command line"
    if isinstance(e, UserError):
        return (str(e).strip().splitlines() or [type(e).__name__])[0]
    if isinstance(e, OmegaConfBaseException):
        return f"configuration: {str(e).splitlines()[0]}"
    return None


def friendly_errors(fn):
    """Print `error: <message>` and exit 2 for errors caused by the user's input; real bugs still raise."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            print("interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
            sys.exit(130)
        except Exception as e:
            message = user_message(e)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)

    return wrapper
