"""The pure scoring core of ``bag eval`` (no bags, no ROS): alignment, matching, statistics."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from echoposed_ros.bag import BagError
from echoposed_ros.bag.evaluate import (
    fit_left_factor,
    latency_stats,
    match_stamps,
    spearman,
    stats,
    target_error,
    tracking,
)
from echoposed_ros.geometry import angle, effective_error


def _random(n, seed, scale=1.0):
    return Rotation.from_rotvec(np.random.default_rng(seed).normal(0, scale, (n, 3))).as_matrix()


def test_fit_left_factor_recovers_the_constant_frame():
    T = _random(50, 0)
    A = _random(1, 1)[0]
    E = A.T @ T  # estimates E_k = A^T T_k, so T_k = A E_k
    assert angle(fit_left_factor(T, E).T @ A) < 1e-9
    noisy = _random(50, 2, 0.05) @ E
    assert np.degrees(angle(fit_left_factor(T, noisy).T @ A)) < 2.0


def test_tracking_error_is_zero_for_an_unknown_left_factor_and_measures_noise():
    n = 40
    T_v, T_p = _random(n, 3, 0.3), _random(n, 4, 0.8)
    A_v, A_p = _random(2, 5)
    stamps = np.arange(n, dtype=np.int64) * 33_000_000
    exact = tracking(stamps, T_v, T_p, stamps + 1_000, A_v @ T_v, A_p @ T_p, np.zeros(n), tolerance_ns=5_000)
    assert exact.error.shape == (n,) and exact.error.max() < 1e-7
    assert angle(exact.alignment.orbit @ A_v) < 1e-7  # L_v = A_v^T
    # a per-sample perturbation of the probe factor is reported, not aligned away
    R = _random(n, 6, 0.05)
    noisy = tracking(stamps, T_v, T_p, stamps, A_v @ T_v, A_p @ T_p @ R, np.zeros(n), tolerance_ns=0)
    direct = effective_error((T_v, T_p @ R), (T_v, T_p))
    assert np.median(np.abs(noisy.error - direct)) < np.radians(1.0)
    assert tracking(stamps, T_v, T_p, stamps + 10**9, T_v, T_p, np.zeros(n), tolerance_ns=1000) is None


def test_match_stamps_pairs_nearest_within_tolerance():
    a = np.array([0, 100, 205, 1000], dtype=np.int64)
    b = np.array([210, 0, 90], dtype=np.int64)  # unsorted
    ia, ib = match_stamps(a, b, tolerance_ns=12)
    assert ia.tolist() == [0, 1, 2] and b[ib].tolist() == [0, 90, 210]
    assert match_stamps(a, np.zeros(0, np.int64), 10)[0].size == 0


def test_spearman_and_stats():
    x = np.arange(10.0)
    assert spearman(x, x ** 3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x, np.ones(10)) is None and spearman(x[:2], x[:2]) is None
    s = stats([1.0, 2.0, np.nan, 3.0], scale=2.0)
    assert s == {'count': 3, 'mean': 4.0, 'median': 4.0, 'p90': pytest.approx(5.6), 'max': 6.0, 'first': 2.0,
                 'last': 6.0}
    assert stats([])['mean'] is None
    assert latency_stats(np.array([0, 10**9]), np.array([40_000_000, 10**9 + 60_000_000]))['mean'] == 50.0


def test_target_error_is_the_effective_error_to_one_pose():
    T_v, T_p = _random(5, 7, 0.3), _random(5, 8)
    err = target_error(T_v, T_p, T_v[2], T_p[2])
    assert err[2] == pytest.approx(0.0, abs=1e-7)
    assert np.allclose(err, effective_error((T_v, T_p), (np.broadcast_to(T_v[2], (5, 3, 3)),
                                                          np.broadcast_to(T_p[2], (5, 3, 3)))))


def test_fit_left_factor_refuses_mismatched_input():
    with pytest.raises(BagError, match='expected equal'):
        fit_left_factor(_random(3, 0), _random(4, 0))


def test_prefetch_keeps_order_and_raises_the_producers_error():
    from echoposed_ros.bag.offline import prefetch

    assert list(prefetch(iter(range(20)), depth=2)) == list(range(20))

    def broken():
        yield 1
        raise BagError('bag x: unreadable message data')

    got = []
    with pytest.raises(BagError, match='unreadable'):
        for item in prefetch(broken()):
            got.append(item)
    assert got == [1]
    it = prefetch(iter(range(1000)), depth=2)
    assert next(it) == 0
    it.close()  # stopping early ends the producer
