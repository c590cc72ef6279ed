"""The closed loop of the guidance evaluation: :func:`guide` runs a volume's runs in lockstep
(simulate the image at the probe's pose, estimate, control step, hold the body twist for one pose
period) and records each run. ROS quaternions are x, y, z, w, as in the controller node.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from echoposed_sim.sector import SectorGeometry
from echoposed_sim.session import SimSession
from echoposed_sim.volume import Volume
from echoposed_sim.world import make_world

from ...estimator.fusion import CycleFusion, fuse_still, heart_pose_to_arm
from ...geometry import Pose, effective_error, matrix_to_quat_xyzw
from ...policy import (
    ControllerConfig,
    GuidanceMemory,
    GuidanceState,
    TargetKind,
    ViewMatcher,
    ViewSample,
    control_step,
    pose_sample,
    target_from_quaternions,
)
from .errors import GuidanceError
from .estimators import BatchEstimate, PoseEstimator, check_estimate
from .protocol import RunSpec
from .result import RunResult

__all__ = ['guide']

Array = NDArray[np.float64]


def _quats(R: Array) -> Array:
    return matrix_to_quat_xyzw(R)


def _sessions(volume: Volume, dynamic: Sequence[bool], sector: SectorGeometry, robot: bool,
              command_timeout_s: float) -> list[SimSession]:
    """One session per run on one volume, each with its own world, clock and cardiac motion setting; they share
    the first one's bricked volume (one copy of the voxels, not one per run)."""
    first = SimSession(volume, make_world(volume, robot=robot), sector, cardiac_motion=bool(dynamic[0]),
                       command_timeout_s=command_timeout_s)
    return [first] + [SimSession(volume, make_world(volume, robot=robot), sector, cardiac_motion=bool(d),
                                 command_timeout_s=command_timeout_s, prepared=first.prepared) for d in dynamic[1:]]


def _fused_cine_targets(t_est: BatchEstimate, specs: Sequence[RunSpec], estimator: PoseEstimator,
                        max_sigma2: float) -> BatchEstimate:
    """``t_est`` with each cine target's estimate replaced by its cine's frames fused at the still target pose."""
    est = t_est._replace(orbit=t_est.orbit.copy(), probe=t_est.probe.copy(), sigma2=t_est.sigma2.copy(),
                         member_orbits=t_est.member_orbits.copy(), member_probes=t_est.member_probes.copy())
    for i, spec in enumerate(specs):
        if spec.target_cine is None:
            continue
        cine = np.asarray(spec.target_cine, dtype=np.float32)
        m = len(cine)
        e = check_estimate(estimator.estimate(cine, np.repeat(spec.target_source.orbit[None], m, 0),
                                              np.repeat(spec.target_source.probe[None], m, 0)), m, estimator.name)
        f = fuse_still(e.member_orbits, e.member_probes, e.sigma2, max_sigma2)
        est.orbit[i], est.probe[i], est.sigma2[i] = f.orbit, f.probe, f.sigma2
        est.member_orbits[i], est.member_probes[i] = f.member_orbits, f.member_probes
    return est


def guide(volume: Volume, specs: Sequence[RunSpec], estimator: PoseEstimator, config: ControllerConfig, *,
          sector: SectorGeometry, rate_hz: float, max_seconds: float, stop_on_converged: bool = True,
          robot: bool = False, fusion_window_s: float = 0.0, fusion_max_sigma2: float = 0.5) -> list[RunResult]:
    """Run ``specs`` on ``volume`` in lockstep, one pose and control step every ``1 / rate_hz`` s, for
    at most ``max_seconds``.

    One estimator call per step for all runs still going; a run ends when the controller reports
    ``converged`` or ``mismatch`` (with ``stop_on_converged``) or at the time limit. Each step: estimate
    the image at the probe's pose, score it against the run's target view (its cine when it has one),
    ``control_step``, hold the command on the session (the body twist; the probe-frame twist in the fine
    stage, as a robot takes it), tick one period. The controller runs with ``control_rate = rate_hz`` (one
    command per pose period) and ``fine_settle_time = 0`` (lockstep: the image of a step is taken after
    the previous step's motion ended).

    ``fusion_window_s`` > 0: each run's estimates go through :class:`~echoposed_ros.estimator.fusion.CycleFusion`
    as the pose node's (``fusion_window``, ``fusion_max_sigma2``) with the probe's simulated poses as the arm's
    measured ones (only their relative motion is used), so the controller sees what the pose node publishes.
    A cine target's pose is its frames fused (:func:`~echoposed_ros.estimator.fusion.fuse_still`: the cycle's
    mean pose), as the controller node sets it.
    """
    n = len(specs)
    if n == 0:
        return []
    dt = 1.0 / rate_hz
    if not dt < config.stale_timeout:
        raise GuidanceError(f"rate {rate_hz:g} Hz: the pose period {dt:.3g} s must be shorter than the controller's "
                            f'stale_timeout {config.stale_timeout:g} s, or every run holds as stale')
    config = replace(config, control_rate=float(rate_hz), fine_settle_time=0.0)
    n_steps = max(1, int(round(max_seconds * rate_hz)))
    mask = sector.mask
    matchers = [ViewMatcher(s.target_cine if s.target_cine is not None else s.target_image, mask,
                            config.match_smoothing) for s in specs]
    t_images = np.stack([np.asarray(s.target_image, dtype=np.float32) for s in specs])
    t_est = check_estimate(estimator.estimate(t_images, np.stack([s.target_source.orbit for s in specs]),
                                               np.stack([s.target_source.probe for s in specs])), n, estimator.name)
    # a cine target's pose is its frames fused, the cycle's mean pose, as the controller node sets it
    t_est = _fused_cine_targets(t_est, specs, estimator, fusion_max_sigma2)
    targets = []
    for i in range(n):
        targets.append(target_from_quaternions(_quats(t_est.orbit[i]), _quats(t_est.probe[i]), 'image',
                                               TargetKind.IMAGE, '', _quats(t_est.member_orbits[i]),
                                               _quats(t_est.member_probes[i]), split=config.target_split))
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
        fusions = ([CycleFusion(fusion_window_s, 1.0, fusion_max_sigma2) for _ in range(n)]
                   if fusion_window_s > 0 else None)
        traj_o: list[list[Array]] = [[] for _ in range(n)]
        traj_p: list[list[Array]] = [[] for _ in range(n)]
        est_err: list[list[float]] = [[] for _ in range(n)]
        sig: list[list[float]] = [[] for _ in range(n)]
        states: list[list[int]] = [[] for _ in range(n)]
        matches: list[list[float]] = [[] for _ in range(n)]
        converged = [False] * n
        unreachable = [0] * n
        done = np.zeros(n, dtype=bool)
        for k in range(n_steps + 1):
            idx = np.flatnonzero(~done)
            if idx.size == 0:
                break
            now = k * dt
            est = check_estimate(estimator.estimate(images[idx], pose_o[idx], pose_p[idx]), idx.size, estimator.name)
            if fusions is not None:   # the centre at the origin, unit radius: exact relative motion
                fused = [fusions[r].add(now, est.member_orbits[j], est.member_probes[j], float(est.sigma2[j]),
                                        heart_pose_to_arm(pose_o[r], pose_p[r], 1.0)) for j, r in enumerate(idx)]
                est = est._replace(orbit=np.stack([f.orbit for f in fused]), probe=np.stack([f.probe for f in fused]),
                                   member_orbits=np.stack([f.member_orbits for f in fused]),
                                   member_probes=np.stack([f.member_probes for f in fused]))
            q_v, q_p = _quats(est.orbit), _quats(est.probe)
            m_v, m_p = _quats(est.member_orbits), _quats(est.member_probes)
            for j, r in enumerate(idx):
                sample = pose_sample(q_v[j], q_p[j], float(est.sigma2[j]), now, k, '', m_v[j], m_p[j])
                view = ViewSample(matchers[r].match(images[r]).score, now, k)
                memory[r], out = control_step(memory[r], now=now, active=True, target=targets[r], sample=sample,
                                              config=config, view=view)
                matches[r].append(view.score)
                traj_o[r].append(pose_o[r].copy())
                traj_p[r].append(pose_p[r].copy())
                est_err[r].append(out.error.effective if out.error is not None else float('nan'))
                sig[r].append(float(est.sigma2[j]))
                states[r].append(int(out.state))
                if out.state == GuidanceState.CONVERGED:
                    converged[r] = True
                ended = converged[r] or out.state == GuidanceState.MISMATCH
                if (ended and stop_on_converged) or k == n_steps:
                    done[r] = True
                    continue
                if out.state == GuidanceState.FINE_ALIGNING:
                    sessions[r].command_cartesian_twist(out.cartesian.v, out.cartesian.omega)
                else:
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
                                 view_match=np.asarray(matches[i], dtype=np.float64),
                                 unreachable_steps=unreachable[i], dt=dt,
                                 target_uncertain=bool(t_est.sigma2[i] > config.uncertainty_threshold)))
    return results
