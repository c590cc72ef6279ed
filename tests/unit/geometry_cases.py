"""Shared cases of the geometry property tests (import: ``from geometry_cases import ...``).

Each hypothesis example draws a seed and checks a batch of B cases built from it, weighted
towards the hard places (angles near 0 and within 1e-6 of pi, coordinate axes).
"""
from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

__all__ = ['PROPS', 'B', 'T', 'random_axis_angle', 'random_poses', 'random_rotations', 'rodrigues', 'seeds']

PROPS = settings(max_examples=1000, deadline=None)
seeds = st.integers(0, 2**63 - 1)
B = 16  # cases per hypothesis example (every property runs on 1000 examples x B cases)


def rodrigues(axis, a):
    """Hand-written reference rotations (independent of scipy): axis (..., 3) unit, a (...) rad."""
    axis, a = np.asarray(axis, float), np.asarray(a, float)
    K = np.zeros(axis.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -axis[..., 2], axis[..., 1], -axis[..., 0]
    K = K - np.swapaxes(K, -1, -2)
    s, c = np.sin(a)[..., None, None], np.cos(a)[..., None, None]
    return np.eye(3) + s * K + (1 - c) * K @ K


def random_axis_angle(rng, n):
    """n (axis, angle) pairs, a quarter each: generic; within 1e-6 of 0 (some exactly 0); within
    1e-6 of pi (some exactly pi); about a coordinate axis by pi/2, pi or 1 rad."""
    kind = rng.integers(0, 4, n)
    axis = rng.standard_normal((n, 3))
    coord = np.eye(3)[rng.integers(0, 3, n)] * rng.choice([-1.0, 1.0], (n, 1))
    axis = np.where((kind == 3)[:, None], coord, axis)
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    tiny = 10.0 ** rng.uniform(-16, -6, n) * (rng.random(n) < 0.8)
    a = np.select([kind == 1, kind == 2, kind == 3],
                  [tiny, np.pi - tiny, rng.choice([np.pi / 2, np.pi, 1.0], n)], rng.uniform(0, np.pi, n))
    return axis, a


def random_rotations(rng, n=B):
    return rodrigues(*random_axis_angle(rng, n))


def random_poses(rng, n=B):
    return random_rotations(rng, n), random_rotations(rng, n)


def T(R):  # noqa: N802 (the transpose, as the formulas write it)
    """Transpose of the last two axes: the inverse of (a batch of) rotations."""
    return np.swapaxes(R, -1, -2)
