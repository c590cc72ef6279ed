"""What the guidance loop asks of a pose estimator (:class:`PoseEstimator`, returning a
:class:`BatchEstimate`) and the two it has: the pose node's model (:class:`ModelEstimator`) and an
oracle with a hidden gauge and ensemble-like noise that validates the harness
(:class:`OracleEstimator`). Poses are (N, 3, 3) rotation matrices; sigma^2 in rad^2.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from echoposed_sim.sector import SectorGeometry

from ...geometry import Pose, angle_between, effective_pose, mean_and_sigma2, so3_exp
from ..frames import check_frame_size, estimate_frames, frame_sector
from ..sector import model_sector
from .errors import GuidanceError

__all__ = ['BatchEstimate', 'ModelEstimator', 'OracleEstimator', 'PoseEstimator', 'check_estimate']

Array = NDArray[np.float64]


class BatchEstimate(NamedTuple):
    """Estimates of N images: ``orbit``, ``probe`` (N, 3, 3) canonical-gauge ensemble means,
    ``sigma2`` (N,) rad^2, ``member_orbits``, ``member_probes`` (N, K, 3, 3) aligned members
    (not gauge-fixed)."""

    orbit: Array
    probe: Array
    sigma2: Array
    member_orbits: Array
    member_probes: Array


class PoseEstimator(Protocol):
    """What the harness needs from an estimator. ``orbits``, ``probes`` (N, 3, 3) are the images'
    true poses (volume frame, canonical gauge): only an oracle may look at them."""

    name: str

    def estimate(self, images: np.ndarray, orbits: Array, probes: Array) -> BatchEstimate: ...


class ModelEstimator:
    """The pose node's estimator (:class:`echoposed_ros.estimator.Estimator`, ``estimate_batch``) on
    simulator slices of the model's own sector: at the model's input size (no resampling), or with
    ``frame_size`` N > 0 as N x N 8-bit square-pixel frames that the estimator maps onto its input,
    as the pose node does with the simulator's (or a scanner's) frames."""

    def __init__(self, estimator: Any, frame_size: int = 0) -> None:
        self.estimator = estimator
        self.frame_size = check_frame_size(frame_size, GuidanceError)
        self.name = f'model:{estimator.path.name}' + (f'@{frame_size}px' if frame_size else '')

    @property
    def sector(self) -> SectorGeometry:
        """The model's sector (its metadata), at its input size or as ``frame_size`` square-pixel
        frames (:func:`echoposed_ros.eval.frames.frame_sector`), for slicing."""
        return frame_sector(model_sector(self.estimator.model.info), self.frame_size)

    def estimate(self, images: np.ndarray, orbits: Array, probes: Array) -> BatchEstimate:
        if self.frame_size:
            ests = estimate_frames(self.estimator, images)
        else:
            ests = self.estimator.estimate_batch(list(images))
        return BatchEstimate(np.stack([e.orbit for e in ests]), np.stack([e.probe for e in ests]),
                             np.array([e.sigma2 for e in ests], dtype=np.float64),
                             np.stack([e.member_orbits for e in ests]), np.stack([e.member_probes for e in ests]))


class OracleEstimator:
    """Reports ``gauge_fix(A g_true)`` for a fixed random unknown ``A`` in SO(3) x SO(3), with members.

    Member k is ``A g_true`` turned on the right by a random rotation of ``noise_deg`` RMS per
    factor (drawn anew on every call; 0 = exact members and sigma^2 = 0), so the mean, sigma^2 and
    the un-gauge-fixed path behave as with a real ensemble. Validates the harness itself. With
    ``noise_tilt_deg`` > 0 the noise grows with how oblique the view is: RMS ``noise_deg * (1 +
    tilt / noise_tilt_deg)``, ``tilt`` = angle between the beam ``R e_z`` and the direction to the
    heart centre ``u`` (degrees), so sigma^2 ranks difficulty by construction (checks the
    sigma^2 / error figures end to end).
    """

    def __init__(self, seed: int = 0, members: int = 5, noise_deg: float = 0.3,
                 A: tuple[Array, Array] | None = None, noise_tilt_deg: float = 0.0) -> None:
        if members < 1:
            raise GuidanceError(f'oracle members = {members!r}; expected >= 1')
        if not (math.isfinite(noise_deg) and noise_deg >= 0):
            raise GuidanceError(f'oracle noise_deg = {noise_deg!r}; expected a finite angle >= 0')
        if not (math.isfinite(noise_tilt_deg) and noise_tilt_deg >= 0):
            raise GuidanceError(f'oracle noise_tilt_deg = {noise_tilt_deg!r}; expected a finite angle >= 0')
        self.rng = np.random.default_rng(seed)
        if A is None:
            A_v, A_p = Rotation.random(2, random_state=seed).as_matrix()
        else:
            A_v, A_p = (np.asarray(a, dtype=np.float64) for a in A)
        self.A = Pose(A_v, A_p)
        self.members = int(members)
        self.noise_rad = math.radians(noise_deg)
        self.noise_tilt_deg = float(noise_tilt_deg)
        self.name = f'oracle(noise {noise_deg:g} deg' + (
            f' x (1 + tilt / {noise_tilt_deg:g} deg)' if noise_tilt_deg else '') + f', K={members})'

    def estimate(self, images: np.ndarray, orbits: Array, probes: Array) -> BatchEstimate:
        orbits = np.asarray(orbits, dtype=np.float64)
        probes = np.asarray(probes, dtype=np.float64)
        n, k = len(orbits), self.members
        scale = np.full(n, self.noise_rad)
        if self.noise_tilt_deg > 0:
            e = effective_pose((orbits, probes))
            tilt = np.degrees(angle_between(e.R[..., :, 2], e.u))
            scale = scale * (1.0 + tilt / self.noise_tilt_deg)
        # RMS angle `scale` per factor: each of the 3 components has sigma scale / sqrt(3)
        kicks = self.rng.standard_normal((2, n, k, 3)) * (scale[None, :, None, None] / math.sqrt(3.0))
        m_v = (self.A.orbit @ orbits)[:, None] @ so3_exp(kicks[0])
        m_p = (self.A.probe @ probes)[:, None] @ so3_exp(kicks[1])
        mean = mean_and_sigma2(m_v, m_p)
        return BatchEstimate(mean.orbit, mean.probe, mean.sigma2, m_v, m_p)


def check_estimate(est: BatchEstimate, n: int, who: str) -> BatchEstimate:
    """``est`` when it holds estimates of ``n`` images with members; else :class:`GuidanceError` naming
    ``who`` and the shapes."""
    if est.orbit.shape != (n, 3, 3) or est.probe.shape != (n, 3, 3) or np.shape(est.sigma2) != (n,):
        raise GuidanceError(f'{who}: expected estimates of {n} images ((n, 3, 3) poses, (n,) sigma2), got '
                            f'{est.orbit.shape}, {est.probe.shape}, {np.shape(est.sigma2)}')
    if est.member_orbits.ndim != 4 or est.member_orbits.shape[0] != n:
        raise GuidanceError(f'{who}: expected members of shape ({n}, K, 3, 3), got {est.member_orbits.shape}')
    return est
