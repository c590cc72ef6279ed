"""Readings of a target image the ensemble reads more than one way.

A target image is estimated once, by the same ensemble as the live frames. When its members disagree
(a high sigma^2) they usually do not scatter: they split into a few groups, each
showing one view, e.g. eight members on a look-alike view half a turn about the beam and two on the
right one. Their mean is then neither. Grouping the members by the slice they show gives the target's
possible views; where the image does not match at the mean, the controller tries those away from it
(``Target.readings``, :mod:`.states`, ``target_split``).

Grouping (deterministic): among the members not yet grouped, the one with the most others within
``radius`` (effective error, rad; ties: the smaller summed distance, then the lower index) takes those
neighbours as a group; repeat. Groups of fewer than ``min_members`` are dropped (a lone member's
reading is not a hypothesis). Readings are ordered by members, most first (ties: smaller sigma^2).

Conventions: members ``(K, 3, 3)`` aligned rotations (orbit ``A_v``, probe ``A_p``), not gauge-fixed, as
the pose node publishes them; a reading's ``pose`` is its members' projected mean in canonical gauge and
``ungauged`` the same mean before the gauge fix (``controller.ungauged_mean``'s convention).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ..geometry import GeometryError, Pose, effective_error, mean_and_sigma2, project_to_so3
from .errors import PolicyError

__all__ = ['Reading', 'target_readings']


@dataclass(frozen=True)
class Reading:
    """One reading of a target image: ``pose`` (canonical gauge) and ``ungauged`` (the same slice, not
    gauge-fixed) of ``members`` ensemble members that agree within the grouping radius; ``sigma2`` (rad^2)
    their disagreement among themselves."""

    pose: Pose
    ungauged: Pose
    members: int
    sigma2: float


def _pairwise(orbits: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """(K, K) effective distances (rad) between members."""
    k = len(orbits)
    i, j = np.triu_indices(k, 1)
    d = np.zeros((k, k))
    d[i, j] = effective_error((orbits[i], probes[i]), (orbits[j], probes[j]))
    return d + d.T


def target_readings(member_orbits: ArrayLike, member_probes: ArrayLike, radius: float,
                    min_members: int = 2) -> tuple[Reading, ...]:
    """The readings of one estimate's members ``(K, 3, 3)`` each (module docstring), most members first.

    ``radius``: rad of effective error within which members count as one reading (> 0); ``min_members``:
    the fewest members a reading needs (>= 1). Raises PolicyError for malformed members.
    """
    if not (np.isfinite(radius) and radius > 0):
        raise PolicyError(f'target readings: radius = {radius!r} rad; expected a positive angle')
    if isinstance(min_members, bool) or not isinstance(min_members, int) or min_members < 1:
        raise PolicyError(f'target readings: min_members = {min_members!r}; expected an integer >= 1')
    try:
        V = project_to_so3(np.asarray(member_orbits, dtype=np.float64), 'member orbits')
        P = project_to_so3(np.asarray(member_probes, dtype=np.float64), 'member probes')
    except (GeometryError, ValueError) as exc:
        raise PolicyError(f'target readings: {exc}') from None
    if V.ndim != 3 or V.shape != P.shape or len(V) == 0:
        raise PolicyError(f'target readings: members of shapes {V.shape} and {P.shape}; expected two (K, 3, 3), K >= 1')
    d = _pairwise(V, P)
    left = np.ones(len(V), dtype=bool)
    groups: list[np.ndarray] = []
    while left.any():
        near = (d <= radius) & left[None, :] & left[:, None]
        count = near.sum(axis=1)
        spread = np.where(near, d, 0.0).sum(axis=1)
        order = np.lexsort((np.arange(len(V)), spread, -count))   # most neighbours, then tightest, then index
        seed = next(int(k) for k in order if left[k])
        members = np.flatnonzero(near[seed])
        groups.append(members)
        left[members] = False
    readings = []
    for members in groups:
        if len(members) < min_members:
            continue
        mean = mean_and_sigma2(V[members], P[members])
        ungauged = Pose(project_to_so3(V[members].mean(axis=0)), project_to_so3(P[members].mean(axis=0)))
        readings.append(Reading(Pose(mean.orbit, mean.probe), ungauged, len(members), float(mean.sigma2)))
    readings.sort(key=lambda r: (-r.members, r.sigma2))
    return tuple(readings)
