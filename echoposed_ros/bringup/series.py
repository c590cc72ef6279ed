"""Bounded records of message streams for long runs (no ROS here).

:class:`DecimatedSeries` keeps a time series of the whole run in a fixed number of rows (its
resolution halves each time it fills); :class:`Running` keeps a stream's count, first and last
time and last value (its mean rate). The run monitor of ``echoposed launch`` is built on them, so
its memory stays flat however long the run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ['SERIES_CAPACITY', 'DecimatedSeries', 'Running']

#: Rows each plotted series keeps at most (whole run; a 30 Hz series halves its resolution every
#: ~2 min of run once full).
SERIES_CAPACITY = 4096


class DecimatedSeries:
    """A bounded time series of ``columns`` float64 values per sample, covering the whole run.

    Samples are kept at full rate until ``capacity`` rows are held; then every other row is
    dropped and from then on only every ``stride``-th sample (stride doubling each time) is kept.
    The kept rows are always the samples whose index is a multiple of :attr:`stride`, so the first
    sample is always kept. Memory: ``capacity * (columns + 1) * 8`` bytes.
    """

    def __init__(self, columns: int, capacity: int = SERIES_CAPACITY) -> None:
        if columns < 1 or capacity < 2 or capacity % 2:
            raise ValueError(f'DecimatedSeries(columns={columns}, capacity={capacity}); expected columns >= 1 '
                             'and an even capacity >= 2')
        self._rows = np.empty((capacity, columns + 1))
        self._kept = 0
        self.count = 0     # samples appended, kept or not
        self.stride = 1

    def append(self, t: float, values: Any) -> None:
        """Add the sample at ``t`` (s) with ``values`` (``columns`` floats)."""
        if self.count % self.stride == 0 and self._kept == self._rows.shape[0]:
            half = self._rows.shape[0] // 2
            self._rows[:half] = self._rows[0::2]
            self._kept, self.stride = half, 2 * self.stride
        if self.count % self.stride == 0:
            self._rows[self._kept, 0] = t
            self._rows[self._kept, 1:] = values
            self._kept += 1
        self.count += 1

    def __len__(self) -> int:
        return self._kept

    @property
    def t(self) -> np.ndarray:
        """``(n,)`` s: times of the kept samples."""
        return self._rows[:self._kept, 0].copy()

    @property
    def values(self) -> np.ndarray:
        """``(n, columns)``: the kept samples' values."""
        return self._rows[:self._kept, 1:].copy()


@dataclass
class Running:
    """Running figures of one message stream: count, first and last time (s), last value."""

    count: int = 0
    first_t: float | None = None
    last_t: float | None = None
    last: Any = None

    def add(self, t: float, value: Any = None) -> None:
        self.count += 1
        self.first_t = t if self.first_t is None else self.first_t
        self.last_t, self.last = t, value

    @property
    def rate(self) -> float:
        """Hz: (count - 1) / (last - first), 0 with fewer than two messages."""
        if self.count < 2 or self.first_t is None or self.last_t is None or not self.last_t > self.first_t:
            return 0.0
        return (self.count - 1) / (self.last_t - self.first_t)
