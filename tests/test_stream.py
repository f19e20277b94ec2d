"""step_stream: batches made by data-loader workers are the ones made here, in order, with user errors and the
files a worker skipped handed back to the main process."""

from __future__ import annotations

import pytest
import torch

from avgen.errors import DataError
from avgen.train.stream import step_stream


class Flaky:
    """A dataset stand-in that skips file `f<step>` at every odd step and refuses step 5 as the user's fault."""

    def __init__(self) -> None:
        self.skipped: dict[str, str] = {}
        self.noted: list[dict[str, str]] = []

    def __call__(self, step: int) -> torch.Tensor:
        if step % 2:
            self.skipped[f"f{step}"] = "unreadable"
        if step == 5:
            raise DataError("step 5: too many unreadable files under /data")
        return torch.arange(3) + step

    def note_skipped(self, skipped: dict[str, str]) -> None:
        self.noted.append(skipped)
        self.skipped.update(skipped)


def test_workers_give_the_batches_in_order_and_hand_back_skips_and_user_errors():
    here, ahead = Flaky(), Flaky()
    rng = torch.get_rng_state()
    with step_stream(here, 1, 5, 0, here) as a, step_stream(ahead, 1, 5, 2, ahead) as b:
        for step in range(1, 5):
            assert torch.equal(a(step), b(step))
    assert torch.equal(torch.get_rng_state(), rng)  # the workers' seeds come from the loader's own generator
    assert ahead.skipped == here.skipped == {"f1": "unreadable", "f3": "unreadable"}
    assert ahead.noted == [{"f1": "unreadable"}, {"f3": "unreadable"}]  # each with the batch that skipped it
    with step_stream(Flaky(), 2, 6, 1, Flaky()) as b, pytest.raises(RuntimeError, match="out of order"):
        b(3)
    failing = Flaky()
    with step_stream(failing, 4, 6, 1, failing) as b:
        b(4)
        with pytest.raises(DataError) as caught:
            b(5)
    assert str(caught.value) == "step 5: too many unreadable files under /data"  # whole, for the one-line report
    assert "f5" in failing.skipped  # the failing step's skips come back too
