"""Batches made ahead of the model: batch `step` is a pure function make(step), made in this process or by data-loader
worker processes, the same tensors either way. Both trainers take their batches from `step_stream`.

A dataset that skips unreadable files (MediaFolder: `skipped`, `note_skipped`) counts them in the process that read
them; with workers each batch carries the files its worker skipped while making it, and the main process merges them
into its own copy of the dataset, so its count and warnings are those of a run without workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

from avgen.errors import UserError

T = TypeVar("T")


class _Steps(torch.utils.data.Dataset):
    """Step `s` as a dataset item: (make(s), {path: reason} of the files `data` skipped while making it, the user
    error make raised or None). A user error travels whole: the loader would re-raise it with only its type and a
    traceback's text, and the one-line report of avgen.errors would lose its message."""

    def __init__(self, make: Callable[[int], Any], data: Any = None) -> None:
        self.make, self.data = make, data

    def __getitem__(self, step: int) -> tuple[Any, dict[str, str], UserError | None]:
        skipped = getattr(self.data, "skipped", {})
        before = len(skipped)  # the record only grows (insertion-ordered), so the new ones are its tail
        try:
            batch, error = self.make(step), None
        except UserError as e:
            batch, error = None, e
        return batch, dict(list(skipped.items())[before:]), error


def _as_made(item):
    return item  # no collation: each item is one whole batch, passed on as make() returned it


@contextmanager
def step_stream(make: Callable[[int], T], start: int, steps: int, workers: int,
                data: Any = None) -> Iterator[Callable[[int], T]]:  # fmt: skip
    """Yields next_batch(step) -> make(step), asked for in order start, start + 1, ..., steps - 1.

    workers == 0: make(step) is called here. workers > 0: that many processes (forked, one thread each) make the next
    batches ahead of the model (two each in flight) and next_batch raises on a step out of order. make must then be a
    pure function of the step that leaves the global RNG alone and returns CPU tensors (CUDA cannot be used in a forked
    worker; move them to the device here). data: the dataset make reads, whose skipped files are merged back (see the
    module docstring). The workers stop when the block ends, however it ends."""
    if workers <= 0 or start >= steps:
        yield make
        return
    # forked: make and its data are shared, not pickled; the loader's own generator seeds the workers (global RNG alone)
    loader = torch.utils.data.DataLoader(_Steps(make, data), batch_size=None, sampler=range(start, steps),
                                         num_workers=workers, prefetch_factor=2, collate_fn=_as_made,
                                         multiprocessing_context="fork", generator=torch.Generator())  # fmt: skip
    it = iter(loader)
    expected = iter(range(start, steps))
    try:

        def next_batch(step: int) -> T:
            if step != next(expected, None):
                raise RuntimeError(f"batch {step} was asked for out of order (the stream makes {start}..{steps - 1})")
            batch, skipped, error = next(it)
            if skipped:
                data.note_skipped(skipped)
            if error is not None:
                raise error
            return batch

        yield next_batch
    finally:
        it._shutdown_workers()
