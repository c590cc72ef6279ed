"""Offline guidance evaluation (docs/method.md section 7): the nodes' estimator and policy cores, no DDS.

Each run closes the loop of the ROS graph without topics: the simulator session
(``echoposed_sim.session.SimSession``, kinematic world by default, the arm with ``robot=True``)
slices the image at the probe's actual pose, the estimator gives the ensemble mean and its
members, :func:`echoposed_ros.policy.pose_sample` and :func:`~echoposed_ros.policy.control_step`
turn them into a body twist exactly as the controller node does (ROS quaternions x, y, z, w;
image targets carrying their members, so the errors come from the un-gauge-fixed ensemble means
on both sides), and the session holds the twist for one period of the pose rate (the
controller's timer would only repeat it until the next pose). All runs of one volume (intra
static, intra dynamic, inter) go in lockstep: one estimator call per step for all of them. There
is no transport latency (the image of step k is estimated and acted on within step k).

Protocols (docs/evaluation.md):

- intra-patient: per volume ``runs`` runs; start and target poses drawn with
  :func:`echoposed_sim.sampling.sample_poses` about the base pose (orbit up to 20 deg, tilts up to
  20 deg, any turn about the beam); the target image is the slice at the target pose at cardiac
  phase 0; static (the heart stays at phase 0) and dynamic (the heart beats: phase = time /
  cycle) use the same starts and targets. Score: the final actual effective error (degrees,
  simulator ground truth) to the target pose.
- inter-patient: per volume ``i``, target images are the standard views (A2C, A3C, A4C) of the
  next volume of the dataset (cyclic) at phase 0, ``inter_runs`` starts per (volume, view) pair.
  A run converges when the controller reached ``converged`` or the median estimated effective
  error over its last ``inter_window_s`` seconds is at most ``inter_threshold_deg``; a pair is
  kept when at least half its runs converge; its dispersion is the mean effective distance of the
  converged runs' final effective poses ``(u, R)`` from their projected mean
  (``u_bar = normalise(mean u)``, ``R_bar = proj_SO3(mean R)``).
- sigma^2 as a quality signal: Spearman rank correlation between a run's sigma^2 (the target
  image's plus the mean over the run's last second) and its final actual effective error.

Angles inside are radians; reported figures are degrees (named ``*_deg``).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from echoposed_sim.sampling import sample_poses
from echoposed_sim.sector import SectorGeometry
from echoposed_sim.session import SimSession
from echoposed_sim.slicer import slice_batch
from echoposed_sim.volume import Volume
from echoposed_sim.world import make_world

from ..geometry import (Pose, angle, angle_between, effective_error, effective_error_parts, effective_pose,
                        gauge_fix, matrix_to_quat_xyzw, mean_and_sigma2, project_to_so3, so3_exp)
from ..policy import (ControllerConfig, GuidanceMemory, GuidanceState, TargetKind, control_step, pose_sample,
                      target_from_quaternions)
from .frames import check_frame_size, estimate_frames, frame_sector
from .sector import model_sector
from .stats import bootstrap_ci, p90, spearman
from ..errors import EchoposedError

__all__ = [
    'MODES',
    'BatchEstimate',
    'DatasetResult',
    'GuidanceError',
    'GuidanceProtocol',
    'ModelEstimator',
    'OracleEstimator',
    'PoseEstimator',
    'RunResult',
    'RunSpec',
    'converged_runs',
    'dispersion_deg',
    'evaluate_dataset',
    'guide',
    'inter_pair_summary',
    'inter_specs',
    'intra_specs',
    'mean_effective_pose',
    'protocol_json',
    'run_sigma2',
    'sigma_error_spearman',
    'state_share',
    'summarize_dataset',
    'summarize_final_errors',
    'summarize_inter',
    'summarize_misses',
    'view_targets',
]

Array = NDArray[np.float64]

MODES = ('static', 'dynamic', 'inter')


class GuidanceError(EchoposedError):
    """Bad guidance-evaluation input (protocol field, estimator output, volume); the message names it."""


@dataclass(frozen=True)
class GuidanceProtocol:
    """What the guidance evaluation runs. Angles in degrees, times in seconds.

    runs: intra-patient runs per volume (each static and dynamic); inter_runs: runs per
    (volume, target view) pair; inter_views: standard views taken from the partner volume;
    inter_threshold_deg, inter_window_s: the convergence rule (module docstring); inter_dynamic:
    the heart beats in inter-patient runs; max_seconds: guidance time limit per run;
    stop_on_converged: a run ends when the controller reports ``converged``; orbit_max_deg,
    tilt_max_deg, turn_max_deg: start / target pose ranges (``sample_poses``); seed: of every
    random draw; robot: PyBullet arm instead of the kinematic world; n_boot: bootstrap resamples;
    sigma_window_s: the final window whose mean sigma^2 ranks a run; rate_hz: the pose rate, one
    image estimated and one control step per period (the controller's output only changes when a
    pose arrives, so its faster timer would repeat the same twist in between; the world is
    stepped by the whole period with the held twist).
    """

    runs: int = 5
    inter_runs: int = 6
    inter_views: tuple[str, ...] = ('A2C', 'A3C', 'A4C')
    inter_threshold_deg: float = 5.0
    inter_window_s: float = 1.0
    inter_dynamic: bool = True
    max_seconds: float = 15.0
    stop_on_converged: bool = True
    orbit_max_deg: float = 20.0
    tilt_max_deg: float = 20.0
    turn_max_deg: float = 180.0
    seed: int = 0
    robot: bool = False
    n_boot: int = 2000
    sigma_window_s: float = 1.0
    rate_hz: float = 10.0

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


# -- estimators ------------------------------------------------------------------------------------


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


def _check_estimate(est: BatchEstimate, n: int, who: str) -> BatchEstimate:
    if est.orbit.shape != (n, 3, 3) or est.probe.shape != (n, 3, 3) or np.shape(est.sigma2) != (n,):
        raise GuidanceError(f'{who}: expected estimates of {n} images ((n, 3, 3) poses, (n,) sigma2), got '
                            f'{est.orbit.shape}, {est.probe.shape}, {np.shape(est.sigma2)}')
    if est.member_orbits.ndim != 4 or est.member_orbits.shape[0] != n:
        raise GuidanceError(f'{who}: expected members of shape ({n}, K, 3, 3), got {est.member_orbits.shape}')
    return est


# -- runs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One guidance run: start pose (volume frame), target image (H, W) float32, the target's true
    pose in the guided volume's frame (``target_true``; None when unknown), the pose the target
    image was sliced at in its own volume (``target_source``, what an oracle reports), labels,
    and whether the heart beats during the run (``dynamic``: phase = time / cycle, else phase 0)."""

    start: Pose
    target_image: np.ndarray
    target_true: Pose | None
    target_source: Pose
    mode: str
    view: str = ''
    target_volume: str = ''
    index: int = 0
    dynamic: bool = False


@dataclass
class RunResult:
    """One finished run. Per step k = 0..S (the image of step k, before its command):
    ``actual_deg`` ground-truth effective error to ``target_true`` (NaN when unknown),
    ``estimated_deg`` the controller's estimated effective error, ``sigma2`` (rad^2), ``states``
    (:class:`GuidanceState` values). ``final_pose`` is where the probe ended (canonical gauge).
    ``target_uncertain``: the target's sigma^2 exceeds the controller's ``uncertainty_threshold``
    (the controller node would refuse that image target; the harness guides anyway and counts it)."""

    volume: str
    mode: str
    view: str
    target_volume: str
    index: int
    start: Pose
    target_true: Pose | None
    final_pose: Pose
    target_sigma2: float
    actual_deg: Array
    estimated_deg: Array
    sigma2: Array
    states: NDArray[np.int8]
    converged: bool
    unreachable_steps: int = 0
    dt: float = 1.0 / 30.0
    target_uncertain: bool = False

    @property
    def initial_error_deg(self) -> float:
        return float(self.actual_deg[0])

    @property
    def final_error_deg(self) -> float:
        return float(self.actual_deg[-1])

    @property
    def time_s(self) -> float:
        return (len(self.actual_deg) - 1) * self.dt

    def window(self, seconds: float) -> slice:
        """The last ``seconds`` of the run's steps (at least one)."""
        n = max(1, int(round(seconds / self.dt)))
        return slice(max(0, len(self.actual_deg) - n), None)

    @property
    def final_estimated_deg(self) -> float:
        """The controller's estimated effective error over the last second (median, deg; NaN if none)."""
        e = self.estimated_deg[self.window(1.0)]
        return float(np.nanmedian(e)) if np.isfinite(e).any() else float('nan')

    def final_error_parts_deg(self) -> tuple[float, Array] | None:
        """Where the run ended against its true target, in parts (deg): the apex angle and the probe
        turn still to make ``(3,)`` about the final probe's x, y, z (:func:`effective_error_parts`);
        None without a true target."""
        if self.target_true is None:
            return None
        apex, turn = effective_error_parts(self.final_pose, self.target_true)
        return math.degrees(float(apex)), np.degrees(turn)

    def quiet_miss(self, tol_deg: float = 5.0) -> bool:
        """Ended beyond ``tol_deg`` of the true target while the estimate put it within ``tol_deg``
        and the controller was neither holding nor coasting on an uncertain pose in the last second:
        the estimator believed it had arrived."""
        w = self.window(1.0)
        unsure = np.isin(self.states[w], (GuidanceState.HOLD_UNCERTAIN, GuidanceState.COASTING))
        return bool(self.final_error_deg > tol_deg and self.final_estimated_deg <= tol_deg and not np.any(unsure))

    def summary(self) -> dict[str, Any]:
        """JSON-ready per-run facts (no per-step traces)."""
        w = self.window(1.0)
        parts = self.final_error_parts_deg()
        return {'volume': self.volume, 'mode': self.mode, 'view': self.view, 'target_volume': self.target_volume,
                'index': self.index, 'initial_error_deg': _num(self.initial_error_deg),
                'final_error_deg': _num(self.final_error_deg),
                'final_estimated_error_deg': _num(self.final_estimated_deg),
                'final_apex_deg': None if parts is None else _num(parts[0]),
                'final_turn_xyz_deg': None if parts is None else [float(v) for v in parts[1]],
                'target_sigma2': _num(self.target_sigma2), 'final_sigma2': _num(float(np.mean(self.sigma2[w]))),
                'converged': bool(self.converged), 'time_s': self.time_s,
                'target_uncertain': bool(self.target_uncertain),
                'hold_share': state_share([self], GuidanceState.HOLD_UNCERTAIN),
                'coast_share': state_share([self], GuidanceState.COASTING),
                'unreachable_steps': int(self.unreachable_steps)}


def state_share(results: Sequence[RunResult], state: GuidanceState) -> float:
    """Share of all the runs' control steps spent in ``state`` (0 without steps)."""
    states = np.concatenate([r.states for r in results]) if results else np.zeros(0, np.int8)
    return float(np.mean(states == state)) if states.size else 0.0


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _quats(R: Array) -> Array:
    return matrix_to_quat_xyzw(R)


def _sessions(volume: Volume, dynamic: Sequence[bool], sector: SectorGeometry, robot: bool,
              command_timeout_s: float) -> list[SimSession]:
    """One session per run on one volume; copies share the first one's bricked volume (one copy of
    the voxels, not one per run), each has its own world and cardiac motion setting."""
    first = SimSession(volume, make_world(volume, robot=robot), sector, cardiac_motion=bool(dynamic[0]),
                       command_timeout_s=command_timeout_s)
    out = [first]
    for d in dynamic[1:]:
        s = copy.copy(first)
        s.world = make_world(volume, robot=robot)
        s.cardiac_motion = bool(d)
        out.append(s)
    return out


def guide(volume: Volume, specs: Sequence[RunSpec], estimator: PoseEstimator, config: ControllerConfig, *,
          sector: SectorGeometry, rate_hz: float, max_seconds: float, stop_on_converged: bool = True,
          robot: bool = False) -> list[RunResult]:
    """Run ``specs`` on ``volume`` in lockstep, one pose and control step every ``1 / rate_hz`` s, for
    at most ``max_seconds``.

    One estimator call per step for all runs still going; a run ends when the controller reports
    ``converged`` (with ``stop_on_converged``) or at the time limit. Each step: estimate the image
    at the probe's pose, ``control_step``, hold the body twist on the session, tick one period.
    """
    n = len(specs)
    if n == 0:
        return []
    dt = 1.0 / rate_hz
    if not dt < config.stale_timeout:
        raise GuidanceError(f'rate {rate_hz:g} Hz: the pose period {dt:.3g} s must be shorter than the controller\'s '
                            f'stale_timeout {config.stale_timeout:g} s, or every run holds as stale')
    n_steps = max(1, int(round(max_seconds * rate_hz)))
    t_images = np.stack([np.asarray(s.target_image, dtype=np.float32) for s in specs])
    t_est = _check_estimate(estimator.estimate(t_images, np.stack([s.target_source.orbit for s in specs]),
                                               np.stack([s.target_source.probe for s in specs])), n, estimator.name)
    targets = []
    for i in range(n):
        targets.append(target_from_quaternions(_quats(t_est.orbit[i]), _quats(t_est.probe[i]), 'image',
                                               TargetKind.IMAGE, '', _quats(t_est.member_orbits[i]),
                                               _quats(t_est.member_probes[i])))
    sessions = _sessions(volume, [s.dynamic for s in specs], sector, robot, command_timeout_s=max(0.5, 2 * dt))
    try:
        images = np.empty((n,) + t_images.shape[1:], dtype=np.float32)
        pose_o, pose_p = np.empty((n, 3, 3)), np.empty((n, 3, 3))
        for i, (s, spec) in enumerate(zip(sessions, specs)):
            s.reset(spec.start.orbit, spec.start.probe)
            g = s.world.read_pose()
            pose_o[i], pose_p[i] = g.orbit, g.probe
            images[i] = s.render(g.orbit, g.probe, s.phase())
        memory = [GuidanceMemory() for _ in range(n)]
        traj_o: list[list[Array]] = [[] for _ in range(n)]
        traj_p: list[list[Array]] = [[] for _ in range(n)]
        est_err: list[list[float]] = [[] for _ in range(n)]
        sig: list[list[float]] = [[] for _ in range(n)]
        states: list[list[int]] = [[] for _ in range(n)]
        converged = [False] * n
        unreachable = [0] * n
        done = np.zeros(n, dtype=bool)
        for k in range(n_steps + 1):
            idx = np.flatnonzero(~done)
            if idx.size == 0:
                break
            now = k * dt
            est = _check_estimate(estimator.estimate(images[idx], pose_o[idx], pose_p[idx]), idx.size, estimator.name)
            q_v, q_p = _quats(est.orbit), _quats(est.probe)
            m_v, m_p = _quats(est.member_orbits), _quats(est.member_probes)
            for j, r in enumerate(idx):
                sample = pose_sample(q_v[j], q_p[j], float(est.sigma2[j]), now, k, '', m_v[j], m_p[j])
                memory[r], out = control_step(memory[r], now=now, active=True, target=targets[r], sample=sample,
                                              config=config)
                traj_o[r].append(pose_o[r].copy())
                traj_p[r].append(pose_p[r].copy())
                est_err[r].append(out.error.effective if out.error is not None else float('nan'))
                sig[r].append(float(est.sigma2[j]))
                states[r].append(int(out.state))
                if out.state == GuidanceState.CONVERGED:
                    converged[r] = True
                if (converged[r] and stop_on_converged) or k == n_steps:
                    done[r] = True
                    continue
                sessions[r].command_body_twist(out.twist.orbit, out.twist.probe)
                frame = sessions[r].tick(dt)
                if not frame.status.reachable:
                    unreachable[r] += 1
                images[r] = frame.image
                pose_o[r], pose_p[r] = frame.pose.orbit, frame.pose.probe
    finally:
        for s in sessions:
            s.world.close()
    results = []
    for i, spec in enumerate(specs):
        to, tp = np.stack(traj_o[i]), np.stack(traj_p[i])
        if spec.target_true is not None:
            T = spec.target_true
            actual = np.degrees(effective_error((to, tp), (np.broadcast_to(T.orbit, to.shape),
                                                           np.broadcast_to(T.probe, tp.shape))))
        else:
            actual = np.full(len(to), np.nan)
        results.append(RunResult(volume=volume.name, mode=spec.mode, view=spec.view, target_volume=spec.target_volume,
                                 index=spec.index, start=spec.start, target_true=spec.target_true,
                                 final_pose=Pose(to[-1], tp[-1]), target_sigma2=float(t_est.sigma2[i]),
                                 actual_deg=np.asarray(actual, dtype=np.float64),
                                 estimated_deg=np.degrees(np.asarray(est_err[i], dtype=np.float64)),
                                 sigma2=np.asarray(sig[i], dtype=np.float64),
                                 states=np.asarray(states[i], dtype=np.int8), converged=converged[i],
                                 unreachable_steps=unreachable[i], dt=dt,
                                 target_uncertain=bool(t_est.sigma2[i] > config.uncertainty_threshold)))
    return results


def _render(volume: Volume, poses: Pose, sector: SectorGeometry) -> np.ndarray:
    """Slices (N, H, W) float32 of ``volume`` at ``poses`` at cardiac phase 0 (frame 0)."""
    return slice_batch(volume, poses.orbit, poses.probe, np.zeros(len(poses.orbit)), sector)


def intra_specs(volume: Volume, rng: np.random.Generator, protocol: GuidanceProtocol,
                sector: SectorGeometry) -> list[RunSpec]:
    """``protocol.runs`` intra-patient runs, each static and dynamic (same start and target): random
    starts, random targets sliced at phase 0."""
    starts = protocol.sample(rng, protocol.runs, volume)
    goals = protocol.sample(rng, protocol.runs, volume)
    images = _render(volume, goals, sector)
    return [RunSpec(start=Pose(starts.orbit[i], starts.probe[i]), target_image=images[i],
                    target_true=Pose(goals.orbit[i], goals.probe[i]),
                    target_source=Pose(goals.orbit[i], goals.probe[i]), mode=mode, index=i,
                    target_volume=volume.name, dynamic=mode == 'dynamic')
            for mode in ('static', 'dynamic') for i in range(protocol.runs)]


def _view_pose(volume: Volume, name: str) -> Pose | None:
    v = volume.views.get(name)
    return None if v is None else gauge_fix((np.asarray(v.orbit, dtype=np.float64),
                                             np.asarray(v.probe, dtype=np.float64)))


def view_targets(volume: Volume, views: Sequence[str], sector: SectorGeometry) -> dict[str, tuple[np.ndarray, Pose]]:
    """``{view: (image (H, W) at phase 0, its pose)}`` for the standard views ``volume`` has."""
    out = {}
    for name in views:
        g = _view_pose(volume, name)
        if g is not None:
            out[name] = (_render(volume, Pose(g.orbit[None], g.probe[None]), sector)[0], g)
    return out


def inter_specs(volume: Volume, partner: str, targets: dict[str, tuple[np.ndarray, Pose]],
                rng: np.random.Generator, protocol: GuidanceProtocol) -> list[RunSpec]:
    """``protocol.inter_runs`` runs per partner view, each from its own random start."""
    specs = []
    for name, (image, source) in targets.items():
        starts = protocol.sample(rng, protocol.inter_runs, volume)
        own = _view_pose(volume, name)
        specs += [RunSpec(start=Pose(starts.orbit[i], starts.probe[i]), target_image=image, target_true=own,
                          target_source=source, mode='inter', view=name, target_volume=partner, index=i,
                          dynamic=protocol.inter_dynamic)
                  for i in range(protocol.inter_runs)]
    return specs


# -- summaries -------------------------------------------------------------------------------------


def summarize_final_errors(final_deg: Sequence[float], groups: Sequence | None = None, *,
                           initial_deg: Sequence[float] | None = None, n_boot: int = 2000,
                           seed: int = 0) -> dict[str, Any]:
    """Mean, median and p90 of final errors (deg) with 95 % bootstrap intervals (cluster bootstrap over
    ``groups`` when given), success within 5 and 10 degrees, and the initial error's mean and median."""
    x = np.asarray(final_deg, dtype=np.float64)
    out: dict[str, Any] = {'runs': int(x.size)}
    if x.size == 0:
        return out
    for key, fn in (('mean', np.mean), ('median', np.median), ('p90', p90)):
        out[f'{key}_deg'] = float(fn(x))
        out[f'{key}_ci95_deg'] = list(bootstrap_ci(x, fn, groups=groups, n_boot=n_boot, seed=seed))
    out['success_within_5deg'] = float(np.mean(x <= 5.0))
    out['success_within_10deg'] = float(np.mean(x <= 10.0))
    if initial_deg is not None:
        a = np.asarray(initial_deg, dtype=np.float64)
        out['initial_mean_deg'] = float(np.mean(a))
        out['initial_median_deg'] = float(np.median(a))
    return out


def summarize_misses(runs: Sequence[RunResult], tol_deg: float = 5.0) -> dict[str, Any]:
    """What the runs that end beyond ``tol_deg`` have in common: how many, how many of them are
    quiet misses (:meth:`RunResult.quiet_miss`: the estimator believed it had arrived), and the
    median of each part of their final error (deg): apex angle and ``|turn|`` about the final
    probe's x (lateral tilt), y (elevation tilt) and z (the beam)."""
    miss = [r for r in runs if r.final_error_deg > tol_deg]
    out: dict[str, Any] = {'tolerance_deg': tol_deg, 'runs': len(miss),
                           'quiet': int(sum(r.quiet_miss(tol_deg) for r in miss))}
    parts = [p for p in (r.final_error_parts_deg() for r in miss) if p is not None]
    if parts:
        apex = np.array([p[0] for p in parts])
        turn = np.abs(np.array([p[1] for p in parts]))
        out['median_apex_deg'] = float(np.median(apex))
        out['median_turn_abs_xyz_deg'] = [float(v) for v in np.median(turn, axis=0)]
    return out


def mean_effective_pose(poses: Pose) -> tuple[Array, Array]:
    """Projected mean of effective poses: ``u_bar = normalise(mean u)``, ``R_bar = proj_SO3(mean R)``."""
    e = effective_pose(poses)
    u = e.u.mean(axis=0)
    norm = float(np.linalg.norm(u))
    if norm < 1e-9:
        raise GuidanceError('mean_effective_pose: the beam directions cancel out; no mean direction')
    return u / norm, project_to_so3(e.R.mean(axis=0), 'mean of R')


def dispersion_deg(poses: Pose) -> float:
    """Mean effective distance (deg) of ``poses`` (N, 3, 3 each) from their projected mean."""
    if len(poses.orbit) == 0:
        raise GuidanceError('dispersion_deg: no poses')
    u_bar, R_bar = mean_effective_pose(poses)
    e = effective_pose(poses)
    d = np.hypot(angle_between(e.u, np.broadcast_to(u_bar, e.u.shape)),
                 angle(np.swapaxes(e.R, -1, -2) @ R_bar))
    return float(np.degrees(d.mean()))


def converged_runs(results: Sequence[RunResult], threshold_deg: float, window_s: float) -> NDArray[np.bool_]:
    """The convergence rule: reached ``converged``, or median estimated error over the last
    ``window_s`` seconds at most ``threshold_deg`` (NaN estimates, e.g. none at all, do not count)."""
    out = []
    for r in results:
        w = r.estimated_deg[r.window(window_s)]
        finite = w[np.isfinite(w)]
        out.append(bool(r.converged or (finite.size > 0 and float(np.median(finite)) <= threshold_deg)))
    return np.asarray(out, dtype=bool)


def inter_pair_summary(results: Sequence[RunResult], convergent: Sequence[bool]) -> dict[str, Any]:
    """One (volume, view) pair: kept when at least half its runs converge; dispersion over the
    convergent runs' final effective poses (None when discarded or fewer than 2 converge)."""
    ok = np.asarray(convergent, dtype=bool)
    n, m = len(results), int(ok.sum())
    kept = n > 0 and 2 * m >= n
    disp = None
    if kept and m >= 2:
        finals = [r.final_pose for r, c in zip(results, ok) if c]
        disp = dispersion_deg(Pose(np.stack([g.orbit for g in finals]), np.stack([g.probe for g in finals])))
    own = [r.final_error_deg for r, c in zip(results, ok) if c and np.isfinite(r.final_error_deg)]
    return {'runs': n, 'convergent': m, 'kept': bool(kept), 'dispersion_deg': disp,
            'own_view_error_deg': float(np.mean(own)) if own else None}


def summarize_inter(results: Sequence[RunResult], protocol: GuidanceProtocol) -> dict[str, Any] | None:
    """Discarded share and mean dispersion (deg) over (volume, view) pairs; None without inter runs."""
    runs = [r for r in results if r.mode == 'inter']
    if not runs:
        return None
    ok = converged_runs(runs, protocol.inter_threshold_deg, protocol.inter_window_s)
    pairs: dict[tuple[str, str, str], list[int]] = {}
    for i, r in enumerate(runs):
        pairs.setdefault((r.volume, r.view, r.target_volume), []).append(i)
    table = []
    for (vol, view, partner), ids in pairs.items():
        s = inter_pair_summary([runs[i] for i in ids], ok[ids])
        table.append({'volume': vol, 'view': view, 'target_volume': partner, **s})
    kept = [p for p in table if p['kept']]
    disp = [p['dispersion_deg'] for p in kept if p['dispersion_deg'] is not None]
    own = [p['own_view_error_deg'] for p in kept if p['own_view_error_deg'] is not None]
    per_view = {}
    for view in sorted({p['view'] for p in table}):
        rows = [p for p in table if p['view'] == view]
        d = [p['dispersion_deg'] for p in rows if p['kept'] and p['dispersion_deg'] is not None]
        per_view[view] = {'pairs': len(rows), 'discarded_share': float(np.mean([not p['kept'] for p in rows])),
                          'mean_dispersion_deg': float(np.mean(d)) if d else None}
    return {'pairs': len(table), 'discarded_pairs': len(table) - len(kept),
            'discarded_share': float((len(table) - len(kept)) / len(table)),
            'mean_dispersion_deg': float(np.mean(disp)) if disp else None,
            'runs': len(runs), 'convergent_runs': int(ok.sum()),
            'threshold_deg': protocol.inter_threshold_deg, 'window_s': protocol.inter_window_s,
            'dynamic': protocol.inter_dynamic,
            'uncertain_target_share': float(np.mean([r.target_uncertain for r in runs])),
            'mean_own_view_error_deg': float(np.mean(own)) if own else None,
            'per_view': per_view, 'pair_table': table}


def run_sigma2(result: RunResult, window_s: float) -> float:
    """A run's uncertainty: the target image's sigma^2 plus the mean sigma^2 over its last ``window_s``."""
    return float(result.target_sigma2 + np.mean(result.sigma2[result.window(window_s)]))


def sigma_error_spearman(results: Sequence[RunResult], window_s: float = 1.0) -> dict[str, Any]:
    """Spearman of sigma^2 against actual error: per run (:func:`run_sigma2` vs the final actual
    effective error; the headline) and per step (the image's sigma^2 vs the absolute gap between
    the estimated and the actual effective error), over runs with a known target."""
    runs = [r for r in results if np.isfinite(r.final_error_deg)]
    s_run = [run_sigma2(r, window_s) for r in runs]
    e_run = [r.final_error_deg for r in runs]
    s_step = np.concatenate([r.sigma2 for r in runs]) if runs else np.zeros(0)
    gap = np.concatenate([np.abs(r.estimated_deg - r.actual_deg) for r in runs]) if runs else np.zeros(0)
    return {'runs': spearman(s_run, e_run) if runs else None, 'n_runs': len(runs),
            'steps': spearman(s_step, gap) if runs else None, 'n_steps': int(np.isfinite(gap).sum())}


def summarize_dataset(results: Sequence[RunResult], protocol: GuidanceProtocol) -> dict[str, Any]:
    """The per-dataset figures of the JSON (docs/evaluation.md)."""
    out: dict[str, Any] = {}
    for mode in ('static', 'dynamic'):
        runs = [r for r in results if r.mode == mode]
        s = summarize_final_errors([r.final_error_deg for r in runs], [r.volume for r in runs],
                                   initial_deg=[r.initial_error_deg for r in runs], n_boot=protocol.n_boot,
                                   seed=protocol.seed)
        if runs:
            s['converged_share'] = float(np.mean([r.converged for r in runs]))
            s['mean_time_s'] = float(np.mean([r.time_s for r in runs]))
            s['hold_share'] = state_share(runs, GuidanceState.HOLD_UNCERTAIN)
            s['coast_share'] = state_share(runs, GuidanceState.COASTING)
            s['uncertain_target_share'] = float(np.mean([r.target_uncertain for r in runs]))
            s['misses'] = summarize_misses(runs)
        out[f'intra_{mode}'] = s
    out['inter'] = summarize_inter(results, protocol)
    intra = [r for r in results if r.mode in ('static', 'dynamic')]
    sp = sigma_error_spearman(intra, protocol.sigma_window_s)
    out['sigma_error_spearman'] = sp['runs']
    out['sigma_error_spearman_steps'] = sp['steps']
    out['sigma_error_n_runs'] = sp['n_runs']
    return out


# -- datasets --------------------------------------------------------------------------------------


@dataclass
class DatasetResult:
    """One dataset's runs and figures: ``name``, ``volumes`` (names, in order), ``results``
    (every run), ``summary`` (:func:`summarize_dataset`), ``source`` (where the volumes came from)."""

    name: str
    volumes: list[str]
    results: list[RunResult]
    summary: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)

    def as_json(self, runs: bool = True) -> dict[str, Any]:
        out = {'source': self.source, 'volumes': self.volumes, **self.summary}
        if runs:
            out['run_table'] = [r.summary() for r in self.results]
        return out


VolumeSource = Volume | Callable[[], Volume]


def _load(item: VolumeSource) -> Volume:
    v = item() if callable(item) else item
    if not isinstance(v, Volume):
        raise GuidanceError(f'expected an echoposed_sim Volume, got {type(v).__name__}')
    return v


def evaluate_dataset(name: str, volumes: Sequence[VolumeSource], estimator: PoseEstimator,
                     config: ControllerConfig, protocol: GuidanceProtocol, sector: SectorGeometry, *,
                     source: dict[str, Any] | None = None, progress: bool = False,
                     inter: bool = True) -> DatasetResult:
    """Intra static, intra dynamic and inter-patient runs on ``volumes`` (Volumes, or zero-argument
    callables loading one, so that only one or two volumes are in memory at a time).

    Inter-patient: volume ``i`` is guided to the views of the next volume with views (cyclic);
    skipped (``inter: None``) with fewer than two volumes or when no other volume has views.
    """
    n = len(volumes)
    if n == 0:
        raise GuidanceError(f'dataset {name}: no volumes')
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc=f'guidance {name}', unit='volume')
    views: list[dict[str, tuple[np.ndarray, Pose]]] = [{} for _ in range(n)]
    names: list[str] = [''] * n
    if inter and n > 1 and protocol.inter_runs > 0:
        for i, item in enumerate(volumes):
            v = _load(item)
            names[i] = v.name
            views[i] = view_targets(v, protocol.inter_views, sector)
            del v
    results: list[RunResult] = []
    for i, item in enumerate(volumes):
        v = _load(item)
        names[i] = v.name
        specs = intra_specs(v, np.random.default_rng([protocol.seed, i, 0]), protocol, sector)
        if inter and n > 1 and protocol.inter_runs > 0:
            partner = next((j % n for j in range(i + 1, i + n) if views[j % n]), None)
            if partner is not None:
                specs += inter_specs(v, names[partner], views[partner], np.random.default_rng([protocol.seed, i, 1]),
                                     protocol)
        # every run of this volume in lockstep: one estimator call per step for all of them
        results += guide(v, specs, estimator, config, sector=sector, rate_hz=protocol.rate_hz,
                         max_seconds=protocol.max_seconds, stop_on_converged=protocol.stop_on_converged,
                         robot=protocol.robot)
        if bar is not None:
            bar.update(1)
        del v
    if bar is not None:
        bar.close()
    return DatasetResult(name=name, volumes=names, results=results, summary=summarize_dataset(results, protocol),
                         source=dict(source or {}))


def protocol_json(protocol: GuidanceProtocol) -> dict[str, Any]:
    """The protocol as JSON-ready values."""
    d = asdict(protocol)
    d['inter_views'] = list(protocol.inter_views)
    return d
