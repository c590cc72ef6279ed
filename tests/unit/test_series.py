"""Bounded records of message streams (echoposed_ros.bringup.series): a decimated series covers the
whole run in a fixed number of rows, and running figures equal those of the full record."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from echoposed_ros.bringup.series import DecimatedSeries, Running


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3000), capacity=st.sampled_from([2, 4, 16, 256]))
def test_a_decimated_series_keeps_every_stride_th_sample_of_the_whole_run(n, capacity):
    series = DecimatedSeries(2, capacity=capacity)
    for i in range(n):
        series.append(0.1 * i, (i, -i))
    assert series.count == n and len(series) <= capacity
    kept = np.arange(0, n, series.stride)
    assert len(series) == kept.size   # every stride-th sample, from the first: the whole run
    np.testing.assert_allclose(series.t, 0.1 * kept)
    np.testing.assert_array_equal(series.values, np.stack([kept, -kept], axis=1).reshape(-1, 2))
    if n <= capacity:
        assert series.stride == 1     # at full rate until the buffer fills


def test_memory_is_fixed_and_the_series_spans_the_run():
    series = DecimatedSeries(18, capacity=4096)
    nbytes = series._rows.nbytes
    for i in range(30 * 60 * 30):   # 30 min at 30 Hz
        series.append(i / 30.0, np.full(18, float(i)))
    assert series._rows.nbytes == nbytes == 4096 * 19 * 8
    assert series.t[0] == 0.0 and series.t[-1] > 30 * 60 - 30 * series.stride / 30.0
    assert 2048 <= len(series) <= 4096


@pytest.mark.parametrize('columns, capacity', [(0, 4), (1, 3), (1, 0)])
def test_bad_shapes_are_refused(columns, capacity):
    with pytest.raises(ValueError, match='expected columns >= 1 and an even capacity'):
        DecimatedSeries(columns, capacity)


def test_running_rate_and_last_equal_the_full_record():
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.uniform(0.01, 0.05, 500))
    running = Running()
    assert running.rate == 0.0 and running.last is None
    for i, ti in enumerate(t):
        running.add(float(ti), float(i))
    assert running.count == 500 and running.last == 499.0
    assert running.rate == pytest.approx((len(t) - 1) / (t[-1] - t[0]), rel=1e-12)
    single = Running()
    single.add(1.0)
    assert single.rate == 0.0
