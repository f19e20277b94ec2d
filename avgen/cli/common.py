"""What every entry point shares: turning configuration mistakes into one-line messages instead of tracebacks."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from avgen.media import MediaError

# avgen/conf/ ships inside the package (package data), so checkouts, editable and wheel installs find the same files
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")

USER_ERRORS = (ValueError, FileNotFoundError, MediaError, MissingMandatoryValue, FloatingPointError)


def friendly_errors(fn):
    """Print `error: <message>` and exit 2 for errors caused by the user's input; real bugs still raise."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MissingMandatoryValue as e:
            print(f"error: {e.full_key} is required: add {e.full_key}=... to the command line", file=sys.stderr)
            sys.exit(2)
        except USER_ERRORS as e:
            print(f"error: {(str(e).strip().splitlines() or [type(e).__name__])[0]}", file=sys.stderr)
            sys.exit(2)
        except OmegaConfBaseException as e:
            print(f"error: configuration: {str(e).splitlines()[0]}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
            sys.exit(130)

    return wrapper
