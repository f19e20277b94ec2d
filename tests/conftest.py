"""Suite-wide policy: where the set-up installed everything (CI, as root), a skipped test is a failure, not a dot.

`.ci/run` sets AVGEN_NO_SKIPS=1 when it runs as root, because there tools/_setup.sh installs the system packages and
the extras that every skip condition looks for; a skip then means a broken set-up, and the run fails naming it.
"""

from __future__ import annotations

import os

import pytest

_skipped: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("AVGEN_NO_SKIPS") == "1" and _skipped and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus: int, config) -> None:
    if os.environ.get("AVGEN_NO_SKIPS") == "1" and _skipped:
        terminalreporter.section("AVGEN_NO_SKIPS: skipped tests fail this run")
        for nodeid, reason in _skipped:
            terminalreporter.write_line(f"error: {nodeid} skipped: {reason}")
