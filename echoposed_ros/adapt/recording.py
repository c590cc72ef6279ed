"""A sweep recording: frames and the arm's probe pose at each, from the simulator or a bag; one ``.npz``.

:class:`Recording` fields: ``images`` uint8 (N, H, W) (mono8 frames as received); ``stamps_s`` (N,)
s from the first frame; ``orientation`` (N, 3, 3) probe axes as columns and ``apex_m`` (N, 3) m,
in one fixed frame (the arm's base, the heart frame in simulation); ``hold`` (N,) int: the pose
each frame was held at (frames at one pose share a number, -1 while moving); ``radius_m`` the
orbit radius the slides used; ``meta`` JSON-able (source, plan).

``save`` / ``load``: ``np.savez_compressed`` with ``meta`` as a JSON string; ``load`` checks every
field and raises :class:`~echoposed_ros.adapt.AdaptError` naming the file and the field.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from echoposed_ros.eval.frames import to_mono8

from . import AdaptError
from .labels import arm_to_labels

__all__ = ['Recording', 'holds_from_poses', 'load_recording', 'pair_frames', 'record_bag', 'record_sim', 'sweep_span_s']

Array = NDArray[np.float64]

#: Frames whose poses differ by less than this (rad, and this times the orbit radius for the apex)
#: from the first of a run of frames are one hold (a bag does not say where the sweep held).
HOLD_TOLERANCE_RAD = math.radians(0.2)


@dataclass
class Recording:
    images: NDArray[np.uint8]
    stamps_s: Array
    orientation: Array
    apex_m: Array
    hold: NDArray[np.int64]
    radius_m: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        shapes = {'images': (self.images.ndim == 3 and n > 0, '(N, H, W) uint8, N >= 1'),
                  'stamps_s': (self.stamps_s.shape == (n,), f'({n},)'),
                  'orientation': (self.orientation.shape == (n, 3, 3), f'({n}, 3, 3)'),
                  'apex_m': (self.apex_m.shape == (n, 3), f'({n}, 3)'),
                  'hold': (self.hold.shape == (n,), f'({n},)')}
        for name, (ok, want) in shapes.items():
            if not ok:
                raise AdaptError(f'recording field {name}: shape {getattr(self, name).shape}; expected {want}')
        if self.images.dtype != np.uint8:
            raise AdaptError(f'recording field images: dtype {self.images.dtype}; expected uint8 (mono8 frames)')

    def __len__(self) -> int:
        return len(self.images)

    def labels(self) -> tuple[Array, Array]:
        """(orbit, probe) (N, 3, 3) relative to frame 0, canonical gauge (:func:`~.labels.arm_to_labels`)."""
        return arm_to_labels(self.orientation, self.apex_m, self.radius_m)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, 'wb') as f:
            np.savez_compressed(f, images=self.images, stamps_s=self.stamps_s, orientation=self.orientation,
                                apex_m=self.apex_m, hold=self.hold, radius_m=np.float64(self.radius_m),
                                meta=np.array(json.dumps(self.meta)))
        return path


def load_recording(path: str | Path) -> Recording:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise AdaptError(f'{path}: cannot read the sweep recording ({exc}); expected an .npz written by '
                         'echoposed adapt') from None
    missing = sorted({'images', 'stamps_s', 'orientation', 'apex_m', 'hold', 'radius_m', 'meta'} - set(data))
    if missing:
        raise AdaptError(f'{path}: sweep recording lacks {missing}')
    try:
        return Recording(data['images'], data['stamps_s'].astype(np.float64), data['orientation'].astype(np.float64),
                         data['apex_m'].astype(np.float64), data['hold'].astype(np.int64),
                         float(data['radius_m']), json.loads(str(data['meta'])))
    except AdaptError as exc:
        raise AdaptError(f'{path}: {exc}') from None


def holds_from_poses(orientation: Array, apex_m: Array, radius_m: float,
                     tolerance: float = HOLD_TOLERANCE_RAD) -> NDArray[np.int64]:
    """Hold numbers for frames (N,) from their poses: a run of at least two consecutive frames within
    ``tolerance`` (rad; apex within ``tolerance * radius_m``) of the run's first frame shares a number;
    other frames get -1."""
    n = len(orientation)
    hold = np.full(n, -1, np.int64)
    start, label = 0, 0
    for i in range(1, n + 1):
        same = False
        if i < n:
            c = np.clip((np.trace(orientation[start].T @ orientation[i]) - 1) / 2, -1, 1)
            same = (math.acos(c) < tolerance
                    and np.linalg.norm(apex_m[i] - apex_m[start]) < tolerance * radius_m)
        if not same:
            if i - start >= 2:
                hold[start:i] = label
                label += 1
            start = i
    return hold


def record_sim(volume: Any, plan: Any, start: tuple[Array, Array], *, size: int = 128, rate_hz: float = 30.0,
               cardiac_motion: bool = True, robot: bool = False) -> Recording:
    """Run ``plan`` (:class:`~.sweep.SweepPlan`) in the simulator from ``start`` (orbit, probe; volume frame):
    the probe follows the plan by probe-frame Cartesian twists from its measured pose
    (:func:`~.sweep.sweep_twist`, as the live node commands the arm); the images are the simulator's
    (``size`` px, 75 deg, 150 mm, square pixels, mono8), the poses the world's (as an arm's forward
    kinematics reports them)."""
    from echoposed_ros.geometry import probe_frame
    from echoposed_sim.sector import SectorGeometry
    from echoposed_sim.session import SimSession
    from echoposed_sim.world import make_world

    sector = SectorGeometry(math.radians(75.0), 150.0, size, size, square_pixels=True)
    session = SimSession(volume, make_world(volume, robot=robot), sector, cardiac_motion=cardiac_motion,
                         command_timeout_s=1.0)
    session.reset(*start)
    radius_m = float(volume.radius) * 1e-3
    dt = 1.0 / rate_hz
    n = int(math.ceil(plan.duration_s * rate_hz)) + 1
    images = np.empty((n, size, size), np.uint8)
    stamps, Rs, apexes, hold = np.empty(n), np.empty((n, 3, 3)), np.empty((n, 3)), np.empty(n, np.int64)
    pose, t, image = session.world.read_pose(), 0.0, session.render(*start, session.phase())
    from .sweep import sweep_twist
    for i in range(n):
        R, o = probe_frame(pose.orbit, pose.probe, volume.centre, volume.radius)
        images[i] = to_mono8(image)
        stamps[i], Rs[i], apexes[i], hold[i] = t, R, o * 1e-3, plan.holding(t)
        twist = sweep_twist(plan, t, Rs[0].T @ R, Rs[0].T @ (apexes[i] - apexes[0]), radius_m, period=dt)
        session.command_cartesian_twist(twist.v, twist.omega)
        frame = session.tick(dt)
        pose, t, image = frame.pose, frame.time_s, frame.image
    meta = {'source': 'sim', 'volume': str(volume.name), 'rate_hz': rate_hz, 'cardiac_motion': cardiac_motion,
            'robot': robot, 'duration_s': float(plan.duration_s), 'waypoints': len(plan.waypoints)}
    return Recording(images, stamps, Rs, apexes, hold, radius_m, meta)


def record_bag(path: str | Path, radius_m: float, image_topic: str = '/probe/image', pose_topic: str = '/probe/pose',
               start_s: float = 0.0, seconds: float = math.inf) -> Recording:
    """The frames of ``image_topic`` with the arm's pose of ``pose_topic`` at each frame's header stamp
    (interpolated: slerp, linear apex), between ``start_s`` and ``start_s + seconds`` from the first frame;
    frames outside the poses' span are left out. ``radius_m``: the orbit radius the sweep's slides used."""
    from echoposed_ros.bag.errors import BagError
    from echoposed_ros.bag.reader import iter_image_batches, read_pose_stamped
    from echoposed_ros.estimator.image import image_to_float

    try:
        poses = read_pose_stamped(path, pose_topic)
        frames, stamps = [], []
        for arrays, encodings, st in iter_image_batches(path, image_topic):
            for a, enc, s in zip(arrays, encodings, st):
                frames.append(to_mono8(image_to_float(a, enc, image_topic)))
                stamps.append(int(s))
    except BagError as exc:
        raise AdaptError(str(exc)) from None
    try:
        rec = pair_frames(frames, np.array(stamps, np.int64), poses.stamps, poses.orientation, poses.position,
                          radius_m, start_s, seconds)
    except AdaptError as exc:
        raise AdaptError(f'{path}: {image_topic} / {pose_topic}: {exc}') from None
    rec.meta.update({'source': 'bag', 'bag': str(path), 'image_topic': image_topic, 'pose_topic': pose_topic,
                     'frame_id': poses.frame_id})
    return rec


def sweep_span_s(path: str | Path, image_topic: str | None = None) -> tuple[float, float] | None:
    """(start s from the first frame, length s) of the adaptation sweep a bag recorded (``/guidance/status``
    in state ``sweeping``, by receive times, 50 ms added on each side: the frames' stamps precede their
    receipt), or None when it holds none. Frames just outside the sweep still carry exact labels."""
    from echoposed_ros.bag.errors import BagError
    from echoposed_ros.bag.reader import read_bag
    try:
        bag = read_bag(path, image_topic, load_images=False)
    except BagError as exc:
        raise AdaptError(str(exc)) from None
    if bag.status is None:
        return None
    t = bag.status.times[np.array([s == 'sweeping' for s in bag.status.states], dtype=bool)]
    if t.size == 0:
        return None
    first_frame = int(bag.images.times.min())
    return max(0.0, (t.min() - first_frame) * 1e-9 - 0.05), (t.max() - t.min()) * 1e-9 + 0.1


def pair_frames(frames: list[np.ndarray], stamps_ns: np.ndarray, pose_stamps_ns: np.ndarray, orientation: Array,
                position: Array, radius_m: float, start_s: float = 0.0, seconds: float = math.inf) -> Recording:
    """Frames (uint8 (H, W), header stamps int64 ns) with the arm's pose at each stamp, interpolated from
    the pose samples (stamps ns, orientation (M, 3, 3), position (M, 3) m; slerp, linear); frames outside the
    poses' span or the window (``start_s`` for ``seconds`` from the first frame) are left out."""
    from scipy.spatial.transform import Rotation, Slerp

    order = np.argsort(pose_stamps_ns, kind='stable')
    p_t = np.asarray(pose_stamps_ns, np.int64)[order].astype(np.float64) * 1e-9
    keep = np.concatenate([[True], np.diff(p_t) > 0])   # Slerp needs increasing times
    p_t, p_R, p_x = p_t[keep], np.asarray(orientation)[order][keep], np.asarray(position)[order][keep]
    if len(p_t) < 2:
        raise AdaptError(f'{len(p_t)} distinct arm pose stamp(s); expected the arm pose over the sweep')
    t = np.asarray(stamps_ns, np.int64).astype(np.float64) * 1e-9
    t0 = t.min() if len(t) else 0.0
    inside = (t >= p_t[0]) & (t <= p_t[-1]) & (t - t0 >= start_s) & (t - t0 < start_s + seconds)
    if not inside.any():
        raise AdaptError(f'no frame lies within the arm poses ({p_t[0]:.3f}-{p_t[-1]:.3f} s) and the window '
                         f'from {start_s:g} s for {seconds:g} s')
    idx = np.flatnonzero(inside)
    if len({frames[i].shape for i in idx}) > 1:
        raise AdaptError('frames of different sizes; expected one size')
    idx = idx[np.argsort(t[idx], kind='stable')]
    tt = t[idx]
    R = Slerp(p_t, Rotation.from_matrix(p_R))(tt).as_matrix()
    apex = np.stack([np.interp(tt, p_t, p_x[:, k]) for k in range(3)], axis=1)
    hold = holds_from_poses(R, apex, radius_m)
    return Recording(np.stack([frames[i] for i in idx]), tt - tt[0], R, apex, hold, float(radius_m),
                     {'frames_left_out': int(len(t) - len(idx))})
