"""Host-to-GPU batch streaming for the CuPy backend: the next batch is copied up while the
current one computes (:func:`stream_batches`, behind ``CupyBackend.stream_to_device``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["stream_batches"]

Array = Any


class _StagingSlot:
    """One stage of :func:`stream_batches`: a pinned host buffer and a device buffer for X
    and for y, grown to the largest batch seen, with the events that guard them."""

    def __init__(self, cp: Any, dtype: str) -> None:
        self.cp, self.dtype = cp, np.dtype(dtype)
        self.pinned: list[np.ndarray] = []
        self.device: list[Any] = []
        self.shapes: list[tuple[int, ...]] = []
        self.copied: Any = None  # the copy out of the pinned buffers has finished
        self.consumed: Any = None  # the step that read the device buffers has run

    def grow(self, *shapes: tuple[int, ...]) -> bool:
        """Make room for arrays of ``shapes``; True when device memory was (re)allocated."""
        if self.shapes and all(
            len(s) == len(o) and s[0] <= o[0] and s[1:] == o[1:]
            for s, o in zip(shapes, self.shapes)
        ):
            return False
        if self.copied is not None:
            self.copied.synchronize()
        cp = self.cp
        self.pinned, self.device = [], []
        for shape in shapes:
            size = int(np.prod(shape))
            memory = cp.cuda.alloc_pinned_memory(max(size, 1) * self.dtype.itemsize)
            self.pinned.append(np.frombuffer(memory, self.dtype, size))
            self.device.append(cp.empty(shape, dtype=self.dtype))
        self.shapes = [tuple(s) for s in shapes]
        self.copied = self.consumed = None
        return True


def stream_batches(
    cp: Any, host_batches: Iterator[tuple[Any, Any]], dtype: str
) -> Iterator[tuple[Array, Array]]:
    """Copy the next batch up while the current one computes.

    Host batches go through two page-locked staging buffers and are copied on a second
    stream into two device buffers; the compute stream (the current one) waits on each
    copy's event (not the host), and a buffer is refilled only after the step that read it
    has run. The batches yielded are views of those buffers, valid until the next batch is
    requested.
    """
    copy_stream = cp.cuda.Stream(non_blocking=True)
    compute_stream = cp.cuda.get_current_stream()
    slots = [_StagingSlot(cp, dtype), _StagingSlot(cp, dtype)]

    def start(slot: _StagingSlot, batch: tuple[Any, Any]) -> tuple[Array, Array]:
        if slot.grow(*(np.shape(a) for a in batch)):
            # Fresh device memory may be a pool block the compute stream still reads:
            # copy into it only after everything queued there so far.
            copy_stream.wait_event(compute_stream.record())
        elif slot.consumed is not None:
            copy_stream.wait_event(slot.consumed)
        if slot.copied is not None:
            slot.copied.synchronize()  # the pinned buffer is free again
        views = []
        for k, host in enumerate(batch):
            host = np.ascontiguousarray(host, dtype=dtype)
            pinned = slot.pinned[k][: host.size].reshape(host.shape)
            pinned[...] = host
            device = slot.device[k][: host.shape[0]]
            device.set(pinned, stream=copy_stream)
            views.append(device)
        slot.copied = copy_stream.record()
        return views[0], views[1]

    batches = iter(host_batches)
    batch = next(batches, None)
    if batch is None:
        return
    index = 0
    current = start(slots[0], batch)
    while True:
        batch = next(batches, None)
        upcoming = start(slots[1 - index], batch) if batch is not None else None
        compute_stream.wait_event(slots[index].copied)
        yield current
        slots[index].consumed = compute_stream.record()
        if upcoming is None:
            break
        current, index = upcoming, 1 - index
