"""What the guidance evaluation runs: the protocol (:class:`GuidanceProtocol`), the evaluated
``MODES``, one run's specification (:class:`RunSpec`) and the seeded start / target draws that make
them (intra-patient random targets, inter-patient standard views of a partner volume).

Poses are in the guided volume's frame, canonical gauge; target images are slices at cardiac phase 0.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from echoposed_sim.sampling import sample_poses
from echoposed_sim.sector import SectorGeometry
from echoposed_sim.slicer import slice_batch
from echoposed_sim.volume import Volume

from ...geometry import Pose, gauge_fix
from .errors import GuidanceError

__all__ = ['MODES', 'GuidanceProtocol', 'RunSpec', 'inter_specs', 'intra_specs', 'protocol_json', 'view_targets']

MODES = ('static', 'dynamic', 'inter')


@dataclass(frozen=True)
class GuidanceProtocol:
    """What the guidance evaluation runs. Angles in degrees, times in seconds.

    runs: intra-patient runs per volume (each static and dynamic); inter_runs: runs per
    (volume, target view) pair; inter_views: standard views taken from the partner volume;
    inter_threshold_deg, inter_window_s: the convergence rule (package docstring); inter_dynamic:
    the heart beats in inter-patient runs; max_seconds: guidance time limit per run;
    stop_on_converged: a run ends when the controller reports ``converged``; orbit_max_deg,
    tilt_max_deg, turn_max_deg: start / target pose ranges (``sample_poses``); seed: of every
    random draw; robot: PyBullet arm instead of the kinematic world; n_boot: bootstrap resamples;
    sigma_window_s: the final window whose mean sigma^2 ranks a run; rate_hz: the pose rate, one
    image estimated and one control step per period (the controller's output only changes when a
    pose arrives, so its faster timer would repeat the same twist in between; the world is
    stepped by the whole period with the held twist); target_cine: where the heart beats, the target
    view is a cine of one cycle at the target pose (a saved echo view usually is), else the image alone.
    """

    runs: int = 5
    inter_runs: int = 6
    inter_views: tuple[str, ...] = ('A2C', 'A3C', 'A4C')
    inter_threshold_deg: float = 5.0
    inter_window_s: float = 1.0
    inter_dynamic: bool = True
    max_seconds: float = 45.0
    stop_on_converged: bool = True
    orbit_max_deg: float = 20.0
    tilt_max_deg: float = 20.0
    turn_max_deg: float = 180.0
    seed: int = 0
    robot: bool = False
    n_boot: int = 2000
    sigma_window_s: float = 1.0
    rate_hz: float = 10.0
    target_cine: bool = True

    def __post_init__(self) -> None:
        for name in ('runs', 'inter_runs', 'n_boot'):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == 'inter_runs' else 1):
                raise GuidanceError(f'guidance protocol {name} = {v!r}; expected a positive integer')
        for name in ('inter_threshold_deg', 'inter_window_s', 'max_seconds', 'sigma_window_s', 'rate_hz'):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise GuidanceError(f'guidance protocol {name} = {v!r}; expected a positive number')
        for name in ('orbit_max_deg', 'tilt_max_deg', 'turn_max_deg'):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= 180):
                raise GuidanceError(f'guidance protocol {name} = {v!r}; expected degrees in [0, 180]')
        object.__setattr__(self, 'inter_views', tuple(str(v).upper() for v in self.inter_views))

    def sample(self, rng: np.random.Generator, n: int, volume: Volume) -> Pose:
        """``n`` random poses about ``volume``'s base pose (canonical gauge)."""
        o, p = sample_poses(rng, n, volume.base_orbit, volume.base_probe, orbit_max=math.radians(self.orbit_max_deg),
                            tilt_max=math.radians(self.tilt_max_deg), turn_max=math.radians(self.turn_max_deg))
        return Pose(o, p)


@dataclass(frozen=True)
class RunSpec:
    """One guidance run: start pose (volume frame), target image (H, W) float32, the target's true
    pose in the guided volume's frame (``target_true``; None when unknown), the pose the target
    image was sliced at in its own volume (``target_source``, what an oracle reports), labels,
    whether the heart beats during the run (``dynamic``: phase = time / cycle, else phase 0), and the
    target as a cine of one cycle (T, H, W) at the target pose, frame 0 the target image (None: the
    image alone), which the fine stage matches live frames against."""

    start: Pose
    target_image: np.ndarray
    target_true: Pose | None
    target_source: Pose
    mode: str
    view: str = ''
    target_volume: str = ''
    index: int = 0
    dynamic: bool = False
    target_cine: np.ndarray | None = None


def _render(volume: Volume, poses: Pose, sector: SectorGeometry) -> np.ndarray:
    """Slices (N, H, W) float32 of ``volume`` at ``poses`` at cardiac phase 0 (frame 0)."""
    return slice_batch(volume, poses.orbit, poses.probe, np.zeros(len(poses.orbit)), sector)


def _cine(volume: Volume, pose: Pose, sector: SectorGeometry) -> np.ndarray:
    """The view at ``pose`` (single, (3, 3) each) over one cardiac cycle: (T, H, W) at phases k / T, T the
    volume's frames; frame 0 is the phase-0 target image."""
    n = volume.frames
    return slice_batch(volume, np.repeat(pose.orbit[None], n, 0), np.repeat(pose.probe[None], n, 0),
                       np.arange(n) / n, sector)


def intra_specs(volume: Volume, rng: np.random.Generator, protocol: GuidanceProtocol,
                sector: SectorGeometry) -> list[RunSpec]:
    """``protocol.runs`` intra-patient runs, each static and dynamic (same start and target): random
    starts, random targets sliced at phase 0."""
    starts = protocol.sample(rng, protocol.runs, volume)
    goals = protocol.sample(rng, protocol.runs, volume)
    images = _render(volume, goals, sector)
    cines = [_cine(volume, Pose(goals.orbit[i], goals.probe[i]), sector) if protocol.target_cine else None
             for i in range(protocol.runs)]
    return [RunSpec(start=Pose(starts.orbit[i], starts.probe[i]), target_image=images[i],
                    target_true=Pose(goals.orbit[i], goals.probe[i]),
                    target_source=Pose(goals.orbit[i], goals.probe[i]), mode=mode, index=i,
                    target_volume=volume.name, dynamic=mode == 'dynamic',
                    target_cine=cines[i] if mode == 'dynamic' else None)
            for mode in ('static', 'dynamic') for i in range(protocol.runs)]


def _view_pose(volume: Volume, name: str) -> Pose | None:
    v = volume.views.get(name)
    return None if v is None else gauge_fix((np.asarray(v.orbit, dtype=np.float64),
                                             np.asarray(v.probe, dtype=np.float64)))


def view_targets(volume: Volume, views: Sequence[str], sector: SectorGeometry
                 ) -> dict[str, tuple[np.ndarray, Pose, np.ndarray]]:
    """``{view: (image (H, W) at phase 0, its pose, its cine (T, H, W))}`` for the standard views ``volume`` has."""
    out = {}
    for name in views:
        g = _view_pose(volume, name)
        if g is not None:
            cine = _cine(volume, g, sector)
            out[name] = (cine[0], g, cine)
    return out


def inter_specs(volume: Volume, partner: str, targets: dict[str, tuple[np.ndarray, Pose, np.ndarray]],
                rng: np.random.Generator, protocol: GuidanceProtocol) -> list[RunSpec]:
    """``protocol.inter_runs`` runs per partner view, each from its own random start."""
    specs = []
    for name, (image, source, cine) in targets.items():
        cine = cine if protocol.inter_dynamic and protocol.target_cine else None
        starts = protocol.sample(rng, protocol.inter_runs, volume)
        own = _view_pose(volume, name)
        specs += [RunSpec(start=Pose(starts.orbit[i], starts.probe[i]), target_image=image, target_true=own,
                          target_source=source, mode='inter', view=name, target_volume=partner, index=i,
                          dynamic=protocol.inter_dynamic, target_cine=cine)
                  for i in range(protocol.inter_runs)]
    return specs


def protocol_json(protocol: GuidanceProtocol) -> dict[str, Any]:
    """The protocol as JSON-ready values."""
    d = asdict(protocol)
    d['inter_views'] = list(protocol.inter_views)
    return d
