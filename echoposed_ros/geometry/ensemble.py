"""Ensemble mean pose and disagreement sigma^2 (docs/method.md section 5)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import so3
from .errors import GeometryError
from .pose import gauge_fix

__all__ = ['EnsembleMean', 'mean_and_sigma2']

Array = NDArray[np.float64]


class EnsembleMean(NamedTuple):
    """Mean pose in canonical gauge (``orbit``, ``probe``: ``(..., 3, 3)``) and ``sigma2`` ``(...)`` in rad^2."""

    orbit: Array
    probe: Array
    sigma2: Array


def mean_and_sigma2(orbits: ArrayLike, probes: ArrayLike) -> EnsembleMean:
    """Projected mean per factor and mean squared geodesic disagreement of K aligned members.

    ``orbits``, ``probes``: ``(..., K, 3, 3)`` member rotations ``A_k,v``, ``A_k,p`` (K >= 1).
    ``M_v = proj(mean_k A_k,v)``, ``M_p = proj(mean_k A_k,p)``;
    ``sigma2 = mean_k [angle(M_v^T A_k,v)^2 + angle(M_p^T A_k,p)^2]`` (rad^2).

    sigma2 is measured against the projected means BEFORE gauge fixing: the gauge fix moves a
    twist ``rot_z(tau)`` from one factor to the other, which would add ``tau^2`` of spurious
    disagreement to each factor although the slice is unchanged. The returned mean pose is then
    put in canonical gauge (same effective pose as the un-gauged mean).

    When members disagree by about a half turn the member mean can be near-singular and its
    nearest rotation is not unique (the mean is then unstable); sigma2 is large in that case.
    """
    A_v = so3.check_rotation(orbits, 'orbits')
    A_p = so3.check_rotation(probes, 'probes')
    if A_v.ndim < 3 or A_v.shape != A_p.shape or A_v.shape[-3] < 1:
        raise GeometryError(f'orbits, probes: expected equal shapes (..., K, 3, 3) with K >= 1, '
                            f'got {A_v.shape} and {A_p.shape}')
    M_v = so3.project_to_so3(A_v.mean(axis=-3), 'mean of orbits')
    M_p = so3.project_to_so3(A_p.mean(axis=-3), 'mean of probes')
    d_v = so3.angle(np.swapaxes(M_v, -1, -2)[..., None, :, :] @ A_v)
    d_p = so3.angle(np.swapaxes(M_p, -1, -2)[..., None, :, :] @ A_p)
    sigma2 = np.mean(d_v ** 2 + d_p ** 2, axis=-1)
    G = gauge_fix((M_v, M_p))
    return EnsembleMean(G.orbit, G.probe, sigma2)
