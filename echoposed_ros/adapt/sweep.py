"""The scripted adaptation sweep: where the probe goes, and how fast, relative to where it starts.

A sweep is a list of waypoints, each an offset along the five probe-frame axes of the fine
alignment (``echoposed_ros.policy.fine.AXES``: turn about the beam z, tilts about x and y at the
apex, orbits about x and y through the point ``orbit_radius`` deep on the beam), all in rad and
relative to the start pose. The probe moves between waypoints in straight lines of the offset at
``speed`` rad/s (the norm of the five rates), holds each one for ``dwell_s`` (at least one cardiac
cycle, so frames of every phase share a pose), and returns to the start at the end.

A waypoint's pose, relative to the start (start probe axes, apex at the origin, heart centre
``radius`` deep on the start's beam): orientation ``S Rz(turn) Rx(tilt_x) Ry(tilt_y)`` with the slide
``S = Rx(orbit_x) Ry(orbit_y)`` turning the probe about the centre, apex ``radius (e_z - S e_z)``
(:meth:`SweepPlan.pose_at`). :func:`sweep_twist` drives the probe along that pose: the plan's motion
plus feedback from the arm's measured pose, so the sweep ends where it began whatever the arm's
tracking error.

Default plan (about 65 s): a ladder of turns about the beam over ``+-turn_max`` in ``turn_step``;
at three of those turns, tilts ``+-tilt`` about x and about y. Turns beyond +-90 deg are not
needed: every frame's left-right mirror is the pose turned by pi about the beam, and training uses
both. Slides (``slide`` > 0, off by default) add ``+-slide`` about x and about y at the start turn;
their labels are exact only when the start faces the heart with no turn about the beam
(:mod:`.labels`), which on a new patient is not known, so they are off unless asked for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from echoposed_ros.geometry import CartesianTwist, rot_x, rot_y, rot_z, so3_log

from . import AdaptError

__all__ = ['SweepOutput', 'SweepPlan', 'SweepRun', 'SweepSettings', 'plan_sweep', 'sweep_step', 'sweep_twist']

Array = NDArray[np.float64]


@dataclass(frozen=True)
class SweepSettings:
    """turn_max, turn_step, tilt, slide: rad (``slide`` an orbit angle about the heart); dwell_s: s
    held at each waypoint; speed: rad/s per axis; max_duration_s: a plan longer than this is refused."""

    turn_max: float = math.radians(90.0)
    turn_step: float = math.radians(15.0)
    tilt: float = math.radians(20.0)
    slide: float = 0.0
    dwell_s: float = 1.2
    speed: float = 0.4
    max_duration_s: float = 90.0

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> AdaptError:
            return AdaptError(f'sweep setting {name} = {getattr(self, name)!r}: expected {want}')
        for name in ('turn_max', 'tilt', 'slide'):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= math.radians(90)):
                raise bad(name, 'an angle in [0, pi/2] rad')
        if not (math.isfinite(self.turn_step) and math.radians(1) <= self.turn_step <= math.pi):
            raise bad('turn_step', 'an angle in [1 deg, pi] rad')
        if not (math.isfinite(self.dwell_s) and 0 < self.dwell_s <= 10):
            raise bad('dwell_s', 'seconds in (0, 10]')
        if not (math.isfinite(self.speed) and 0 < self.speed <= 2):
            raise bad('speed', 'rad/s in (0, 2]')
        if not (math.isfinite(self.max_duration_s) and self.max_duration_s > 0):
            raise bad('max_duration_s', 'a positive number of seconds')


@dataclass(frozen=True)
class SweepPlan:
    """waypoints (M, 5) rad offsets along ``AXES`` (row 0 the start, all zeros; the last also zeros);
    arrive (M,) s: when the probe reaches each; dwell_s: held there (not after the last)."""

    waypoints: Array
    arrive: Array
    dwell_s: float

    @property
    def duration_s(self) -> float:
        return float(self.arrive[-1])

    def offset_at(self, t: float) -> Array:
        """The planned offset (5,) rad at time ``t`` s from the start (the start before 0, the end after)."""
        k = int(np.searchsorted(self.arrive, t, side='right')) - 1
        if k < 0:
            return self.waypoints[0].copy()
        if k >= len(self.arrive) - 1:
            return self.waypoints[-1].copy()
        leave = self.arrive[k] + self.dwell_s
        if t <= leave:
            return self.waypoints[k].copy()
        frac = (t - leave) / (self.arrive[k + 1] - leave)
        return self.waypoints[k] + frac * (self.waypoints[k + 1] - self.waypoints[k])

    def pose_at(self, t: float, radius: float) -> tuple[Array, Array]:
        """The planned (orientation (3, 3), apex (3,)) at ``t`` relative to the start (see the module doc);
        apex in the unit of ``radius``."""
        q = self.offset_at(t)
        slide = rot_x(q[3]) @ rot_y(q[4])
        R = slide @ rot_z(q[0]) @ rot_x(q[1]) @ rot_y(q[2])
        return R, radius * (np.array([0.0, 0.0, 1.0]) - slide[:, 2])

    def holding(self, t: float) -> int:
        """Index of the waypoint held at ``t``, or -1 while moving (or outside the plan)."""
        k = int(np.searchsorted(self.arrive, t, side='right')) - 1
        if 0 <= k < len(self.arrive) - 1 and t <= self.arrive[k] + self.dwell_s:
            return k
        return -1


def _waypoints(s: SweepSettings) -> Array:
    n = int(math.floor(s.turn_max / s.turn_step + 1e-9))
    ladder = s.turn_step * np.arange(-n, n + 1)
    rows: list[list[float]] = [[0, 0, 0, 0, 0]]
    rows += [[t, 0, 0, 0, 0] for t in ladder]
    if s.tilt > 0:
        for t in sorted({ladder[-1] * 2 / 3, 0.0, ladder[0] * 2 / 3}, reverse=True):
            t = float(s.turn_step * round(t / s.turn_step))
            rows += [[t, s.tilt, 0, 0, 0], [t, -s.tilt, 0, 0, 0], [t, 0, s.tilt, 0, 0], [t, 0, -s.tilt, 0, 0]]
    if s.slide > 0:
        rows += [[0, 0, 0, s.slide, 0], [0, 0, 0, -s.slide, 0], [0, 0, 0, 0, s.slide], [0, 0, 0, 0, -s.slide]]
    rows.append([0, 0, 0, 0, 0])
    return np.array(rows, dtype=np.float64)


def plan_sweep(settings: SweepSettings | None = None) -> SweepPlan:
    """The sweep of ``settings`` (defaults: see the module doc); AdaptError if it lasts longer than
    ``max_duration_s``."""
    s = settings or SweepSettings()
    way = _waypoints(s)
    arrive = np.zeros(len(way))
    for k in range(1, len(way)):
        move = float(np.linalg.norm(way[k] - way[k - 1])) / s.speed   # speed: of the whole motion
        arrive[k] = arrive[k - 1] + s.dwell_s + max(move, 1e-3)
    plan = SweepPlan(way, arrive, s.dwell_s)
    if plan.duration_s > s.max_duration_s:
        raise AdaptError(f'sweep of {len(way)} waypoints lasts {plan.duration_s:.1f} s; expected at most '
                         f'max_duration_s = {s.max_duration_s:g} s (fewer turns, a shorter dwell or a higher speed)')
    return plan


def sweep_twist(plan: SweepPlan, t: float, orientation: Array, apex: Array, radius: float, *,
                period: float = 1 / 30, time_constant_s: float = 0.2, max_rate: float = 1.0) -> CartesianTwist:
    """The probe-frame twist (v in the unit of ``radius`` per s, omega rad/s) that keeps the probe at
    (``orientation`` (3, 3), ``apex`` (3,)), both relative to the sweep's start, on the plan at ``t``: the
    plan's own motion over the next ``period`` s (the command's hold: feed-forward) plus the error to the
    planned pose closed in ``time_constant_s``; at most ``max_rate`` rad/s (and ``max_rate * radius`` for v)."""
    dt = period
    R_now, a_now = plan.pose_at(t, radius)
    R_next, a_next = plan.pose_at(t + dt, radius)
    R = np.asarray(orientation, dtype=np.float64)
    w = so3_log(R_next @ R_now.T) / dt + so3_log(R_now @ R.T) / time_constant_s     # start frame
    u = (a_next - a_now) / dt + (a_now - np.asarray(apex, dtype=np.float64)) / time_constant_s
    omega, v = R.T @ w, R.T @ u
    scale = max(1.0, float(np.linalg.norm(omega)) / max_rate, float(np.linalg.norm(v)) / (max_rate * radius))
    return CartesianTwist(v / scale, omega / scale)


@dataclass(frozen=True)
class SweepRun:
    """A sweep under way: its plan, when it started (s, the commanding node's clock), the arm's pose then
    (``R0`` (3, 3) probe axes as columns, ``a0`` (3,) m, any fixed frame) and the orbit radius (m)."""

    plan: SweepPlan
    started: float
    R0: Array
    a0: Array
    radius: float

    #: s the sweep goes on after its plan, so the feedback brings the probe back to the start.
    SETTLE_S = 0.5


class SweepOutput(NamedTuple):
    """One cycle of a sweep: the probe-frame twist (v m/s, omega rad/s; zero once it ends), whether it
    still runs, and the operator cue."""

    twist: CartesianTwist
    running: bool
    cue: str


def sweep_step(run: SweepRun, now: float, orientation: Array, apex: Array, pose_age_s: float,
               stale_timeout: float, max_rate: float, period: float) -> SweepOutput:
    """The twist of a running sweep at ``now`` from the arm's newest pose (``pose_age_s`` old), held for the
    control ``period`` (s): zero and ended when that pose is older than ``stale_timeout`` (fail safe) or
    the plan is over."""
    zero = CartesianTwist(np.zeros(3), np.zeros(3))
    t = now - run.started
    if not pose_age_s <= stale_timeout:
        return SweepOutput(zero, False, f'adaptation sweep stopped: no arm pose for {pose_age_s:.2f} s')
    if t >= run.plan.duration_s + SweepRun.SETTLE_S:
        return SweepOutput(zero, False, 'adaptation sweep done')
    R = run.R0.T @ np.asarray(orientation, dtype=np.float64)
    a = run.R0.T @ (np.asarray(apex, dtype=np.float64) - run.a0)
    twist = sweep_twist(run.plan, t, R, a, run.radius, period=period, max_rate=max_rate)
    return SweepOutput(twist, True, f'adaptation sweep {min(t, run.plan.duration_s):.0f} / '
                                    f'{run.plan.duration_s:.0f} s: keep the probe on the skin')
