"""``echoposed bag eval`` for one bag: read it, run the estimator offline, score, report (JSON-ready).

:func:`evaluate_bag` = :func:`~.reader.read_bag` (everything but image pixels) ->
:func:`estimate_batches` over :func:`~.reader.iter_image_batches` (the runtime
:class:`~echoposed_ros.estimator.Estimator`, batched; memory stays at one batch of images, so long
recordings fit) -> the scores of :mod:`.evaluate`:

- ``offline``: tracking error (deg) of the offline estimates against ground truth after the
  constant left alignment, per image and summarised; sigma^2 (rad^2); Spearman rank correlation
  of sigma^2 with that error;
- ``recorded``: the same for the live estimates recorded on ``echoposed/pose``, plus the recorded
  latency (image stamp -> pose received by the recorder, ms) and the pose node's inference time;
- ``target``: ground-truth effective error to the target (deg) over time: initial, final, minimum;
- ``guidance``: the controller's states and estimated error from ``guidance/status``; command
  speeds from ``probe/cmd``;
- ``series``: the time series behind them (s since the first image, degrees).

Targets (:class:`TargetSpec`): a standard view (its pose stored in the bag by the recorder, or
read from ``volume``), the ground truth at a bag time, or by default the view stored in the bag.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..geometry import project_to_so3, quat_xyzw_to_matrix
from .errors import BagError
from .evaluate import latency_stats, match_stamps, spearman, stats, target_error, tracking
from .reader import BagContents, ProbePoseSeries, iter_image_batches, read_bag, read_pose_stamped

if TYPE_CHECKING:
    from ..estimator.fusion import FusionSettings

__all__ = ['OfflineEstimates', 'Target', 'TargetSpec', 'estimate_batches', 'estimate_images',
           'evaluate_bag', 'prefetch', 'resolve_target']

DEG = float(np.degrees(1.0))


@dataclass(frozen=True)
class TargetSpec:
    """What to score the effective error against: ``view`` (A4C, A2C, A3C), or ``bag_time_s``
    (the ground-truth pose that many seconds after the first image), else the bag's stored view.
    ``volume``: a volume file whose standard views give the view's pose when the bag has none."""

    view: str | None = None
    bag_time_s: float | None = None
    volume: Path | None = None


@dataclass(frozen=True)
class Target:
    name: str
    source: str
    orbit: np.ndarray
    probe: np.ndarray


@dataclass(frozen=True)
class OfflineEstimates:
    """Offline estimates per image: stamps int64 ns; orbit / probe (N, 3, 3) canonical mean;
    ungauged_orbit / ungauged_probe (N, 3, 3) projected member means before gauge fixing;
    sigma2 (N,) rad^2; wall_s: seconds spent estimating; rejected: images the estimator refused
    (as the live pose node rejects them: blank, no fan, bad encoding), with the first refusal and
    the count per reason (``rejected_by_reason``: {reason: images}); fused: estimates fused with earlier
    frames (cycle fusion, :func:`estimate_batches`)."""

    stamps: np.ndarray
    orbit: np.ndarray
    probe: np.ndarray
    ungauged_orbit: np.ndarray
    ungauged_probe: np.ndarray
    sigma2: np.ndarray
    wall_s: float
    rejected: int = 0
    first_rejection: str = ''
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    fused: int = 0


def estimate_images(estimator: Any, images: list[np.ndarray], encodings: list[str], stamps: np.ndarray,
                    batch_size: int = 64) -> OfflineEstimates:
    """Run ``estimator.estimate_batch`` over the images in batches of ``batch_size``."""
    stamps = np.asarray(stamps, np.int64)
    return estimate_batches(estimator, ((images[s:s + batch_size], encodings[s:s + batch_size],
                                         stamps[s:s + batch_size]) for s in range(0, len(images), batch_size)))


def estimate_batches(estimator: Any, batches: Iterable[tuple[list[np.ndarray], list[str], np.ndarray]],
                     fusion: FusionSettings | None = None, arm: ProbePoseSeries | None = None
                     ) -> OfflineEstimates:
    """Run ``estimator.estimate_batch`` on each (images, encodings, stamps) batch (e.g. from
    :func:`~.reader.iter_image_batches`); ``wall_s`` includes producing the batches. With ``fusion``
    (:class:`~echoposed_ros.estimator.fusion.FusionSettings`, ``window_s`` > 0) and the arm's recorded poses
    ``arm``, each estimate is fused as the pose node fuses it
    (:class:`~echoposed_ros.estimator.fusion.CycleFusion`; images in bag order); ``fused`` counts those that
    fused more than one frame."""
    from ..estimator import EstimatorError
    from ..estimator.fusion import ArmPose

    cycle = fusion.fusion() if fusion is not None and fusion.window_s > 0 and arm is not None else None
    fused = 0

    t0 = time.perf_counter()
    orbit, probe, uo, up, sigma2, all_stamps = [], [], [], [], [], []
    count = rejected = 0
    first_rejection = ''
    reasons: dict[str, int] = {}
    for images, encodings, stamps in batches:
        names = [f'image {count + i}' for i in range(len(images))]
        count += len(images)
        stamps = np.asarray(stamps, np.int64)
        try:
            batch = estimator.estimate_batch(images, encodings, names)
        except EstimatorError:  # one bad image: estimate one by one, skipping the refused ones
            batch, keep = [], []
            for i, (image, encoding, name) in enumerate(zip(images, encodings, names)):
                try:
                    batch.extend(estimator.estimate_batch([image], [encoding], [name]))
                    keep.append(i)
                except EstimatorError as exc:
                    rejected += 1
                    first_rejection = first_rejection or str(exc)
                    reason = str(exc).removeprefix(f'{name}: ')
                    reasons[reason] = reasons.get(reason, 0) + 1
            stamps = stamps[keep]
        if not batch:
            continue
        if cycle is not None and arm is not None and fusion is not None:
            arms: list[ArmPose | None] = [None] * len(batch)   # the arm pose stamped nearest each image, if near
            for i, j in zip(*match_stamps(stamps, arm.stamps, int(fusion.arm_tolerance_s * 1e9))):
                arms[i] = ArmPose(arm.orientation[j], arm.position[j])
            out = [cycle.add(int(t) * 1e-9, e.member_orbits, e.member_probes, e.sigma2, a)
                   for t, e, a in zip(stamps, batch, arms)]
            fused += sum(o.frames > 1 for o in out)
            batch = [replace(e, orbit=o.orbit, probe=o.probe, member_orbits=o.member_orbits,
                             member_probes=o.member_probes) for e, o in zip(batch, out)]
        all_stamps.append(stamps)
        orbit += [e.orbit for e in batch]
        probe += [e.probe for e in batch]
        sigma2 += [e.sigma2 for e in batch]
        members_v = np.stack([e.member_orbits for e in batch])
        members_p = np.stack([e.member_probes for e in batch])
        uo.append(project_to_so3(members_v.mean(axis=1), 'member mean (orbit)'))
        up.append(project_to_so3(members_p.mean(axis=1), 'member mean (probe)'))
    empty = np.zeros((0, 3, 3))
    stamps = np.concatenate(all_stamps) if all_stamps else np.zeros(0, np.int64)
    return OfflineEstimates(stamps, np.array(orbit).reshape(-1, 3, 3),
                            np.array(probe).reshape(-1, 3, 3),
                            np.concatenate(uo) if uo else empty, np.concatenate(up) if up else empty,
                            np.array(sigma2, dtype=np.float64), time.perf_counter() - t0, rejected, first_rejection,
                            dict(sorted(reasons.items())), fused)


def prefetch(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``items`` produced in a background thread, up to ``depth`` ahead (reading and decoding
    the next batch overlaps the estimator's call, which releases the GIL). Exceptions of the
    producer are raised here, in order."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as exc:
            q.put((done, exc))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _stored_target(c: BagContents) -> Target | None:
    view = c.custom.get('echoposed.target_view')
    if not view:
        return None
    try:
        orbit = quat_xyzw_to_matrix(np.array(json.loads(c.custom['echoposed.target_orbit_xyzw'])), 'target orbit')
        probe = quat_xyzw_to_matrix(np.array(json.loads(c.custom['echoposed.target_probe_xyzw'])), 'target probe')
    except (KeyError, ValueError, TypeError) as exc:
        raise BagError(f'{c.path}: custom_data holds target view {view} but not a valid pose: {exc}') from exc
    return Target(view, 'recorded in the bag (simulator ground truth)', orbit, probe)


@lru_cache(maxsize=4)
def _volume_views(path: Path) -> dict[str, Any]:
    """The standard views of a volume file (loaded once per file for a batch of bags)."""
    from echoposed_sim.volume_io import load_volume
    try:
        return dict(load_volume(path).views)
    except (OSError, ValueError) as exc:
        raise BagError(f'volume {path}: cannot be loaded for its standard views: {exc}') from exc


def resolve_target(c: BagContents, spec: TargetSpec) -> Target | None:
    """The target pose in the truth's frame, or None when none is given or stored."""
    if spec.bag_time_s is not None:
        if c.truth is None:
            raise BagError(f'{c.path}: --target-bag-time needs ground truth (/probe/true_pose) in the bag')
        t = (c.truth.stamps - c.images.stamps[0]) * 1e-9
        i = int(np.argmin(np.abs(t - spec.bag_time_s)))
        return Target(f'truth at {t[i]:.3f} s', 'ground truth at a bag time', c.truth.orbit[i], c.truth.probe[i])
    stored = _stored_target(c)
    if spec.view is None:
        return stored
    view = spec.view.strip().upper()
    if stored is not None and stored.name == view:
        return stored
    if spec.volume is None:
        raise BagError(f'{c.path}: target view {view} is not stored in the bag'
                       f'{f" (it stores {stored.name})" if stored else ""}; give --volume FILE to read its pose')
    views = _volume_views(Path(spec.volume))
    if view not in views:
        raise BagError(f'{spec.volume}: no standard view {view} (known: {", ".join(sorted(views)) or "none"})')
    v = views[view]
    return Target(view, f'standard view of {spec.volume}', np.asarray(v.orbit, float), np.asarray(v.probe, float))


def _tracking_report(tr: Any) -> dict[str, Any]:
    if tr is None:
        return {'matched': 0, 'note': 'no estimate matched a ground-truth stamp'}
    return {'matched': int(tr.error.size), 'error_deg': stats(tr.error, DEG), 'sigma2': stats(tr.sigma2),
            'sigma_error_spearman': spearman(tr.sigma2, tr.error)}


def evaluate_bag(path: str | Path, estimator: Any | None = None, target: TargetSpec = TargetSpec(),
                 image_topic: str | None = None, batch_size: int = 64,
                 tolerance_s: float = 0.02, fusion: FusionSettings | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score one bag. Returns (report, series): the JSON-ready report and the time series for plots.

    ``estimator``: an :class:`~echoposed_ros.estimator.Estimator` (None: no offline estimation).
    ``fusion``: the pose node's cycle fusion for the offline estimates (None: single frames), with the arm's
    poses recorded on ``/probe/pose`` (a bag without them gets single frames, and the report says so).
    Raises :class:`BagError` for a bag that cannot be scored.
    """
    t_start = time.perf_counter()
    c = read_bag(path, image_topic=image_topic, load_images=False)
    t_read = time.perf_counter() - t_start
    img = c.images
    t0 = int(img.stamps[0])
    span = (img.stamps[-1] - img.stamps[0]) * 1e-9
    rate = (len(img) - 1) / span if span > 0 else 0.0
    tol = int(tolerance_s * 1e9)
    report: dict[str, Any] = {
        'bag': str(c.path), 'ok': True, 'topics': c.topics, 'message_counts': c.counts,
        'image_topic': img.topic, 'images': len(img), 'image_rate_hz': rate,
        'recording_s': span + (1.0 / rate if rate > 0 else 0.0),
        'ground_truth': c.truth is not None, 'ground_truth_samples': 0 if c.truth is None else len(c.truth),
        'integrity': {'chunks': c.integrity.chunks, 'chunk_crcs_checked': c.integrity.crc_checked,
                      'summary_crc_checked': c.integrity.summary_crc_checked},
    }
    series: dict[str, Any] = {'bag': str(c.path), 'last_image': None}

    def rel(stamps: np.ndarray) -> list[float]:
        return ((np.asarray(stamps, np.int64) - t0) * 1e-9).tolist()

    # offline estimation
    if estimator is not None:
        last: list[np.ndarray] = []
        undecodable: dict[str, int] = {}

        def batches() -> Iterator[tuple[list[np.ndarray], list[str], np.ndarray]]:
            for batch in iter_image_batches(c.path, img.topic, batch_size, skipped=undecodable):
                last[:] = batch[0][-1:]
                yield batch

        arm, fusion_note = None, None
        window = fusion.window_s if fusion is not None else 0.0
        if window > 0:
            try:
                arm = read_pose_stamped(c.path)
            except BagError as exc:
                fusion_note = f'single frames: no arm poses to fuse with ({exc})'
        est = estimate_batches(estimator, prefetch(batches()), fusion, arm)
        series['last_image'] = last[0] if last else None
        reasons = dict(est.rejected_by_reason)
        for reason, n in undecodable.items():
            reasons[reason] = reasons.get(reason, 0) + n
        off: dict[str, Any] = {'model': str(getattr(estimator, 'path', '')), 'estimated': int(est.sigma2.size),
                               'rejected': est.rejected + sum(undecodable.values()),
                               'rejected_by_reason': dict(sorted(reasons.items())),
                               'first_rejection': est.first_rejection or next(iter(undecodable), None),
                               'estimate_s': est.wall_s, 'sigma2': stats(est.sigma2),
                               'fusion_window_s': window if arm is not None else 0.0, 'fused': est.fused}
        if fusion_note:
            off['fusion'] = fusion_note
        if est.sigma2.size == 0:
            off['note'] = 'the estimator refused every image'
        elif c.truth is not None:
            tr = tracking(c.truth.stamps, c.truth.orbit, c.truth.probe, est.stamps, est.ungauged_orbit,
                          est.ungauged_probe, est.sigma2, tol)
            off.update(_tracking_report(tr))
            if tr is not None:
                series['offline'] = {'t': rel(tr.stamps), 'error_deg': (tr.error * DEG).tolist(),
                                     'sigma2': tr.sigma2.tolist()}
        else:
            off['note'] = 'no ground truth in the bag: tracking error not scored'
            series['offline'] = {'t': rel(est.stamps), 'sigma2': est.sigma2.tolist()}
        report['offline'] = off
    else:
        report['offline'] = {'skipped': 'no model'}
    # recorded live estimates
    if c.poses is not None:
        p = c.poses
        rec: dict[str, Any] = {'poses': len(p), 'latency_ms': latency_stats(p.stamps, p.times),
                               'inference_ms': stats(p.inference_s, 1e3), 'sigma2': stats(p.sigma2)}
        if c.truth is not None:
            tr = tracking(c.truth.stamps, c.truth.orbit, c.truth.probe, p.stamps, p.member_mean_orbit,
                          p.member_mean_probe, p.sigma2, tol)
            rec.update(_tracking_report(tr))
            if tr is not None:
                series['recorded'] = {'t': rel(tr.stamps), 'error_deg': (tr.error * DEG).tolist(),
                                      'sigma2': tr.sigma2.tolist()}
        series['latency_ms'] = ((p.times - p.stamps) * 1e-6).tolist()
        report['recorded'] = rec
    # target
    tgt = resolve_target(c, target)
    if tgt is not None and c.truth is not None:
        err = target_error(c.truth.orbit, c.truth.probe, tgt.orbit, tgt.probe)
        t = np.array(rel(c.truth.stamps))
        within = t[err * DEG <= 5.0]
        report['target'] = {'name': tgt.name, 'source': tgt.source, 'initial_error_deg': float(err[0] * DEG),
                            'final_error_deg': float(err[-1] * DEG), 'min_error_deg': float(err.min() * DEG),
                            'first_within_5deg_s': float(within[0]) if within.size else None}
        series['target'] = {'name': tgt.name, 't': t.tolist(), 'error_deg': (err * DEG).tolist()}
    elif tgt is not None:
        report['target'] = {'name': tgt.name, 'note': 'no ground truth in the bag: error to target not scored'}
    # guidance
    if c.status is not None:
        s = c.status
        names, counts = np.unique(s.states, return_counts=True)
        report['guidance'] = {'status_messages': len(s.states), 'final_state': s.states[-1],
                              'converged': s.states[-1] == 'converged',
                              'final_estimated_error_deg': float(s.effective_error[-1] * DEG),
                              'state_counts': {str(n): int(k) for n, k in zip(names, counts)},
                              'target': s.targets[-1]}
        series['status'] = {'t': ((s.times - c.images.times[0]) * 1e-9).tolist(),
                            'estimated_error_deg': (s.effective_error * DEG).tolist()}
    if c.commands is not None:
        report['commands'] = {'count': int(c.commands.times.size),
                              'max_orbit_speed': float(np.linalg.norm(c.commands.orbit, axis=1).max()),
                              'max_probe_speed': float(np.linalg.norm(c.commands.probe, axis=1).max())}
    wall = time.perf_counter() - t_start
    report['eval_s'] = wall
    report['read_s'] = t_read
    report['realtime_factor'] = report['recording_s'] / wall if wall > 0 else None
    return report, series
