"""Fine alignment: drive the probe by how much the live frames look like the target image (docs/method.md section 6).

Independent of the pose estimate. The probe makes small, active probe-frame motions along five
axes (``AXES``: turns about the beam z and about x and y at the apex, then turns about x and y
through the point ``orbit_radius`` deep on the beam, i.e. orbits about the heart; all angles in
rad) and measures the view match (:mod:`.similarity`) at each point, a coordinate search executed
by motion:

- per axis: measure at the base, at ``base + step`` and at ``base - step``, and move to where the
  parabola through the three peaks (at most ``2 step`` away; the best of the three if it has no
  peak); that point is the next axis's base;
- the pose estimate as a prior: a sweep whose start the estimate puts more than a step from the target
  first measures where it points (``prior`` times the estimate's remaining error, along the five axes);
  that point becomes the base if it matches better, and a point that does not ends the proposals until
  the next search (a biased estimate still points the right way from afar, and is left alone near the
  view, where its bias exceeds what is left);
- a sweep over all axes whose moves all stayed within ``step`` halves it; once it is below
  ``min_step`` the search ends at the best point it measured, if its match reached ``accept_match``;
  else it starts again from there (``attempts`` in all; these later searches step ``retry_turn_scale``
  times wider about the beam, where the coarse loop's hand-over errs most); the last, and a search
  stopped by ``max_time``, ends at its best point too if its match reached ``rest_match`` (the view
  nearly found: not back at the hand-over pose, where the estimate's bias left the probe), else back
  at the entry pose (no view like the target: another heart or view; the estimate decides);
- a best point that reached ``accept_match`` is measured again over ``confirm_time`` (about a cardiac cycle),
  and that mean is its match from then on: converged only if it holds (a beating heart's best single frame
  is the luckiest of many), else the search goes on as one that fell short;
- a point farther than ``max_excursion`` from the entry pose (the norm of the way there along the five axes) is never
  visited: a goal outside is cut back to the bound.

The search's points are poses of the probe relative to the entry pose ((4, 4) rigid transforms in the entry
probe frame; apex positions in units of the orbit radius), moves along an axis are made in the probe's own axes
at the base, and odometry composes the rigid motion of every command given
(:func:`~echoposed_ros.geometry.twist_to_transform`): a point visited again is the same pose, whatever the path
(a sum of the moves is not: turns do not commute, and a search that swings back and forth drifts away from the
points it recorded). Each call commands the twist that takes the probe from where odometry puts it towards the
goal, at up to the speed limits. A point is measured with the
first new frame taken (:attr:`ViewSample.taken`: its stamp, not when it arrived, so an image pipeline's
latency never lets a frame from before the move count) at least ``settle_time`` seconds after the probe
got there by odometry (``settle_time``: the arm's lag behind its commands; ``measure_frames`` frames
averaged). :func:`fine_step` is one pure step; :class:`FineMemory` is everything it
carries. Angles rad, times s.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from echoposed_ros.geometry import CartesianTwist, transform_to_twist, twist_to_transform

from .errors import PolicyError

__all__ = ['AXES', 'FineMemory', 'FineOutput', 'FineSettings', 'ViewSample', 'axis_rates_to_probe_twist',
           'check_fine_settings', 'fine_start', 'fine_step', 'probe_twist_to_axis_rates', 'rests_at_best']

Array = NDArray[np.float64]

#: The search axes, in the order they are tried: probe-frame turns about z (the beam), x and y at the apex,
#: then orbits about x and y (turns about the point ``orbit_radius`` deep on the beam).
AXES = ('turn_z', 'tilt_x', 'tilt_y', 'orbit_x', 'orbit_y')

_ARRIVED = 1e-6  # rad: a goal closer than this has been reached
_BISECTIONS = 40  # halvings of the segment that find where a move leaves the excursion bound


class ViewSample(NamedTuple):
    """One live frame's view match: ``score`` (NaN: unusable frame), ``received`` (s, controller clock),
    ``seq`` (increases by one per frame), ``acquired`` (s, controller clock: when the frame was taken, its
    header stamp; NaN: unknown, ``received`` stands in)."""

    score: float
    received: float
    seq: int
    acquired: float = float('nan')

    @property
    def taken(self) -> float:
        """s, when the frame was taken: ``acquired``, else ``received``."""
        return self.acquired if math.isfinite(self.acquired) else self.received


@dataclass(frozen=True)
class FineSettings:
    """What bounds the search: ``step`` (rad, first step), ``min_step`` (rad, done below it),
    ``max_excursion`` (rad, norm of the offset from the entry pose), ``settle_time`` (s, a frame taken
    sooner after a move is not measured: the arm's lag), ``max_time`` (s, the search ends after it),
    speed limits ``max_turn_speed`` (turns and tilts) and ``max_orbit_speed`` (orbit axes) in rad/s,
    ``period`` (s, how long one command is held), ``measure_frames`` (frames averaged per point),
    ``accept_match`` (the match a search must reach), ``attempts`` (searches in all: one that ends below
    ``accept_match`` starts again from its best point with the first step, until the last),
    ``retry_turn_scale`` (those later searches step about the beam this many times wider), ``rest_match``
    (a failed search ends at its best point if that matched at least this, else at the entry pose),
    ``confirm_time`` (s, a best point that reached ``accept_match`` is measured again this long and its mean
    decides; 0: the single best frame decides) and ``prior`` (the share of the pose estimate's remaining error
    a sweep first tries; 0: the estimate is not used)."""

    step: float
    min_step: float
    max_excursion: float
    settle_time: float
    max_time: float
    max_turn_speed: float
    max_orbit_speed: float
    period: float
    measure_frames: int = 1
    accept_match: float = -1.0
    attempts: int = 1
    retry_turn_scale: float = 1.0
    rest_match: float = -1.0
    confirm_time: float = 0.0
    prior: float = 0.0

    def __post_init__(self) -> None:
        check_fine_settings({f.name: getattr(self, f.name) for f in fields(self)})


def check_fine_settings(values: Mapping[str, Any], names: Mapping[str, str] | None = None,
                        owner: str = 'FineSettings') -> None:
    """Raise PolicyError naming the first bad value of ``values`` (``{FineSettings field: value}``).

    ``names`` maps a field to what its owner calls it (:class:`~.config.ControllerConfig`: ``step`` is
    ``fine_step``), so that one set of rules names the parameter a user set; ``owner`` prefixes it."""
    def name(field_name: str) -> str:
        return names.get(field_name, field_name) if names is not None else field_name

    def bad(field_name: str, expected: str) -> PolicyError:
        return PolicyError(f'{owner}.{name(field_name)}: expected {expected}, got {values[field_name]!r}')

    for f in ('step', 'min_step', 'max_excursion', 'max_time', 'max_turn_speed', 'max_orbit_speed', 'period'):
        if not (math.isfinite(values[f]) and values[f] > 0):
            raise bad(f, 'a finite number > 0')
    for f in ('settle_time', 'confirm_time', 'prior'):
        if not (math.isfinite(values[f]) and values[f] >= 0):
            raise bad(f, 'a finite number >= 0')
    for f in ('measure_frames', 'attempts'):
        if isinstance(values[f], bool) or not isinstance(values[f], int) or values[f] < 1:
            raise bad(f, 'an integer >= 1')
    for f in ('accept_match', 'rest_match'):
        if not (math.isfinite(values[f]) and -1.0 <= values[f] <= 1.0):
            raise bad(f, 'an NCC in [-1, 1]')
    if values['rest_match'] > values['accept_match']:
        raise bad('rest_match', f'<= {name("accept_match")} ({values["accept_match"]!r})')
    if values['min_step'] > values['step']:
        raise bad('min_step', f'<= {name("step")} ({values["step"]!r} rad)')
    if not (math.isfinite(values['retry_turn_scale']) and values['retry_turn_scale'] >= 1.0):
        raise bad('retry_turn_scale', 'a finite factor >= 1')


def _zeros() -> Array:
    return np.zeros(len(AXES))


def _identity() -> Array:
    return np.eye(4)


def _transform(rates: Array) -> Array:
    """(4, 4) the rigid motion of holding the axis ``rates`` (5,) (rad/s) for one second (orbit radius 1)."""
    return twist_to_transform(axis_rates_to_probe_twist(rates, 1.0))


def _coordinates(transform: Array) -> Array:
    """(5,) rad along ``AXES``: the axis rates that, held one second, make the rigid motion ``transform`` (the
    inverse of :func:`_transform`; the apex's offset along the beam, which no axis moves, is left out)."""
    return probe_twist_to_axis_rates(transform_to_twist(transform), 1.0)


def _between(a: Array, b: Array) -> Array:
    """(5,) rad along ``AXES`` at pose ``a``: the way from pose ``a`` to pose ``b`` (both (4, 4) from the entry)."""
    return _coordinates(np.linalg.inv(a) @ b)


def _moved(a: Array, rates: Array) -> Array:
    """(4, 4) the pose reached from pose ``a`` by the way ``rates`` (5,) rad along ``AXES`` in its own axes."""
    return a @ _transform(rates)


@dataclass(frozen=True)
class FineMemory:
    """The search's state. at: (4, 4) where the probe is from the entry pose by commanded odometry (module
    docstring); goal: the pose it is going to; base: the current axis's centre pose; base_score, plus, minus: the
    match measured at ``base`` and a step either way along the axis (-inf: not visited); best, best_score: the
    best pose measured so far; moved: rad, the largest move of this sweep; acc_sum,
    acc_n: frames summed so far at the current point; attempt: the search's number (``attempts``);
    step: rad; axis: index into ``AXES``; trial: 0 at the base, +1 / -1 at ``base +- step``, 2 at the pose
    estimate's point; propose: sweeps still start at the estimate's point (until one matches worse); rate: (5,)
    rad/s commanded at ``last_now`` (s); arrived_at: s, when the goal was reached (None while moving);
    last_seq: last frame used; started: s; confirming, confirm_first: the best point is being measured again
    (since the frame taken at ``confirm_first``, s); done: the search ended; score: the last frame's match."""

    at: Array = field(default_factory=_identity)
    goal: Array = field(default_factory=_identity)
    base: Array = field(default_factory=_identity)
    base_score: float = float('nan')
    plus: float = float('-inf')
    minus: float = float('-inf')
    best: Array = field(default_factory=_identity)
    best_score: float = float('-inf')
    moved: float = 0.0
    acc_sum: float = 0.0
    acc_n: int = 0
    attempt: int = 1
    step: float = 0.0
    axis: int = 0
    trial: int = 0
    propose: bool = True
    rate: Array = field(default_factory=_zeros)
    last_now: float = float('nan')
    arrived_at: float | None = None
    last_seq: int = -1
    started: float = float('nan')
    confirming: bool = False
    confirm_first: float = float('nan')
    done: bool = False
    score: float = float('nan')

    @property
    def offset(self) -> Array:
        """(5,) rad along ``AXES``: where the probe is, as the way from the entry pose (:func:`_coordinates`)."""
        return _coordinates(self.at)

    @property
    def excursion(self) -> float:
        """rad, norm of :attr:`offset`: how far the probe is from the entry pose."""
        return float(np.linalg.norm(self.offset))


class FineOutput(NamedTuple):
    """One step's command: ``rates`` (5,) rad/s along ``AXES`` (hold until the next call), ``done``."""

    rates: Array
    done: bool


def fine_start(now: float, settings: FineSettings) -> FineMemory:
    """The memory of a search that starts at the current pose at time ``now`` (s)."""
    return FineMemory(step=settings.step, started=float(now), last_now=float(now), arrived_at=float(now))


def _speed_limits(settings: FineSettings) -> Array:
    return np.array([settings.max_turn_speed] * 3 + [settings.max_orbit_speed] * 2)


def _inside(pose: Array, settings: FineSettings) -> bool:
    """Whether ``pose`` (4, 4) lies within ``max_excursion`` of the entry pose (the norm of the way there)."""
    return bool(np.linalg.norm(_coordinates(pose)) <= settings.max_excursion + 1e-12)


def _clip_to_bound(base: Array, way: Array, settings: FineSettings) -> Array:
    """(4, 4) the pose ``way`` (5,) rad along ``AXES`` from ``base`` (inside the bound), or where that way leaves
    the bound (bisection)."""
    goal = _moved(base, way)
    if _inside(goal, settings):
        return goal
    lo, hi = 0.0, 1.0
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _inside(_moved(base, mid * way), settings) else (lo, mid)
    return _moved(base, lo * way)


def _vertex(f0: float, fp: float, fm: float, h: float) -> float:
    """Where the parabola through ``(-h, fm), (0, f0), (h, fp)`` peaks, within ``[-2h, 2h]``; the best of
    the three points when it has no peak (or a point could not be measured: -inf)."""
    curvature = fp + fm - 2.0 * f0
    if np.isfinite(curvature) and curvature < 0:
        return float(np.clip(-h * (fp - fm) / (2.0 * curvature), -2.0 * h, 2.0 * h))
    return (0.0, h, -h)[int(np.argmax([f0, fp, fm]))]


def _scales(m: FineMemory, settings: FineSettings) -> Array:
    """Per axis, the search step in units of ``m.step``: 1, but ``retry_turn_scale`` about the beam in a search
    after a failed one."""
    return np.array([settings.retry_turn_scale if m.attempt > 1 else 1.0, 1.0, 1.0, 1.0, 1.0])


def _axis_step(m: FineMemory, settings: FineSettings) -> float:
    """rad, the step along the current axis."""
    return m.step * float(_scales(m, settings)[m.axis])


def _along(m: FineMemory, amount: float) -> Array:
    """(5,) the way ``amount`` rad along the current axis."""
    e = _zeros()
    e[m.axis] = amount
    return e


def _advance(m: FineMemory, base: Array, settings: FineSettings) -> FineMemory:
    """Make ``base`` the new base (measured on arrival) for the next axis; after the last axis halve the
    step, and once it is below ``min_step`` end at the best point measured."""
    axis, step = m.axis + 1, m.step
    moved = max(m.moved, float(np.max(np.abs(_between(m.base, base)) / _scales(m, settings))))
    if axis == len(AXES):
        axis = 0
        if moved <= step:       # the peak lies within a step on every axis: refine
            step /= 2.0
        moved = 0.0
        if step < settings.min_step:
            return _conclude(replace(m, step=step, moved=moved), settings, retry=True)
    return replace(m, goal=base, base=base, trial=0, axis=axis, step=step, moved=moved)


def _conclude(m: FineMemory, settings: FineSettings, retry: bool) -> FineMemory:
    """A search has ended (``retry``: not by the time limit): confirm a best point that reached ``accept_match``
    over ``confirm_time``, or start the next attempt from it, or end (:func:`_end`)."""
    best = m.best.copy()
    if m.best_score >= settings.accept_match and settings.confirm_time > 0:
        return replace(m, goal=best, base=best, trial=0, axis=0, confirming=True, acc_sum=0.0, acc_n=0,
                       confirm_first=float('nan'))
    if retry and m.best_score < settings.accept_match and m.attempt < settings.attempts:
        return replace(m, goal=best, base=best, trial=0, axis=0, step=settings.step, moved=0.0,
                       attempt=m.attempt + 1, propose=True)
    end = _end(m, settings)
    return replace(m, goal=end, base=end, trial=0, axis=0, done=True)


def _confirm(m: FineMemory, score: float, taken: float, now: float, settings: FineSettings) -> FineMemory:
    """One more frame at the best point being confirmed; after ``confirm_time`` its mean match is the best
    point's match: converged at ``accept_match``, else as a search that ended below it (one lucky frame of a
    beating heart passes the bar a few degrees off; a cycle's mean does not)."""
    first = m.confirm_first if math.isfinite(m.confirm_first) else taken
    total, n = m.acc_sum + score, m.acc_n + 1
    if taken - first < settings.confirm_time:
        return replace(m, acc_sum=total, acc_n=n, confirm_first=first)
    mean = total / n
    m = replace(m, acc_sum=0.0, acc_n=0, confirm_first=float('nan'), confirming=False, best_score=mean)
    if mean >= settings.accept_match:
        return replace(m, done=True)
    return _conclude(m, settings, retry=float(now) - m.started <= settings.max_time)


def rests_at_best(m: FineMemory, settings: FineSettings) -> bool:
    """Whether a search that ends stays at its best point: that matched at least ``rest_match`` (at least
    ``accept_match``: converged); else it goes back to the entry pose."""
    return m.best_score >= settings.rest_match


def _end(m: FineMemory, settings: FineSettings) -> Array:
    """Where a search that ends goes (:func:`rests_at_best`): its best point, or the entry pose."""
    return m.best.copy() if rests_at_best(m, settings) else _identity()


def _measure(m: FineMemory, score: float, settings: FineSettings, prior: Array | None) -> FineMemory:
    """Use the match ``score`` measured at ``m.goal`` and choose the next goal (module docstring); ``prior``:
    where the pose estimate puts the target from here (:func:`fine_step`)."""
    if score > m.best_score:
        m = replace(m, best=m.goal.copy(), best_score=score)
    h = _axis_step(m, settings)
    if m.trial == 0 and m.axis == 0 and m.propose and prior is not None and settings.prior > 0:
        proposal = settings.prior * np.asarray(prior, dtype=np.float64)
        if float(np.linalg.norm(proposal)) > m.step:   # the estimate says the view is farther than a step
            return replace(m, base_score=score, plus=-np.inf, minus=-np.inf, trial=2,
                           goal=_clip_to_bound(m.base, proposal, settings))
    if m.trial == 2:                        # at the estimate's point: the new base if it matched better
        m = replace(m, base=m.goal.copy(), base_score=score) if score > m.base_score else replace(m, propose=False)
        return _to_plus(m, h, settings)
    if m.trial == 0:                        # at the base: then + along the axis
        return _to_plus(replace(m, base_score=score, plus=-np.inf, minus=-np.inf), h, settings)
    if m.trial == 1:
        return _after_plus(replace(m, plus=score), h, settings)
    return _to_peak(replace(m, minus=score), settings)


def _to_plus(m: FineMemory, h: float, settings: FineSettings) -> FineMemory:
    """The base is measured: on to the + point (``h`` rad along the axis), or past it when it lies outside the
    bound."""
    plus = _moved(m.base, _along(m, h))
    if _inside(plus, settings):
        return replace(m, goal=plus, trial=1)
    return _after_plus(m, h, settings)


def _after_plus(m: FineMemory, h: float, settings: FineSettings) -> FineMemory:
    """The + point is measured (or outside the bound): go to the - point, or straight to the vertex."""
    minus = _moved(m.base, _along(m, -h))
    if _inside(minus, settings):
        return replace(m, goal=minus, trial=-1)
    return _to_peak(m, settings)           # m.minus stays -inf: not visited


def _to_peak(m: FineMemory, settings: FineSettings) -> FineMemory:
    """The axis is measured: on to the parabola's peak (inside the bound), the next axis's base."""
    way = _along(m, _vertex(m.base_score, m.plus, m.minus, _axis_step(m, settings)))
    return _advance(m, _clip_to_bound(m.base, way, settings), settings)


def fine_step(m: FineMemory, *, now: float, view: ViewSample | None, settings: FineSettings,
              prior: Array | None = None) -> tuple[FineMemory, FineOutput]:
    """One control cycle of the search at time ``now`` (s) with the newest frame's match ``view``; ``prior``:
    (5,) rad along ``AXES``, where the pose estimate puts the target from the current pose
    (:func:`probe_twist_to_axis_rates` of the error's probe-frame twist; None: no confident estimate)."""
    elapsed = max(0.0, float(now) - m.last_now) if math.isfinite(m.last_now) else 0.0
    limits = _speed_limits(settings)
    at = _moved(m.at, m.rate * elapsed) if elapsed > 0 and np.any(m.rate) else m.at
    m = replace(m, at=at, last_now=float(now), rate=_zeros())
    if m.done:
        return _move(m, settings, limits)
    if not m.confirming and float(now) - m.started > settings.max_time:
        return _move(_conclude(m, settings, retry=False), settings, limits)
    left = _between(m.at, m.goal)
    if np.max(np.abs(left)) > _ARRIVED:
        return _move(replace(m, arrived_at=None), settings, limits, left)
    arrived = m.arrived_at if m.arrived_at is not None else float(now)
    m = replace(m, arrived_at=arrived)
    if view is not None and view.seq != m.last_seq and view.taken >= arrived + settings.settle_time:
        m = replace(m, last_seq=view.seq, score=float(view.score))
        if m.confirming and math.isfinite(view.score):
            m = _confirm(m, float(view.score), float(view.taken), float(now), settings)
        elif math.isfinite(view.score):
            total, n = m.acc_sum + float(view.score), m.acc_n + 1
            if n >= settings.measure_frames:
                m = _measure(replace(m, acc_sum=0.0, acc_n=0), total / n, settings, prior)
            else:
                m = replace(m, acc_sum=total, acc_n=n)
    return _move(m, settings, limits)


def _move(m: FineMemory, settings: FineSettings, limits: Array,
          left: Array | None = None) -> tuple[FineMemory, FineOutput]:
    """Command the rest of the way to ``m.goal`` within one period at most at the speed limits; ``left``: that
    way (5,) when the caller has it already (it is computed from ``m.at`` and ``m.goal`` otherwise)."""
    if left is None:
        left = _between(m.at, m.goal)
    if np.max(np.abs(left)) <= _ARRIVED:
        return m, FineOutput(_zeros(), m.done)
    rates = left / settings.period
    scale = float(np.max(np.abs(rates) / limits))
    if scale > 1.0:
        rates = rates / scale
    return replace(m, rate=rates, arrived_at=None), FineOutput(rates, m.done)


def axis_rates_to_probe_twist(rates: Array, radius: float) -> CartesianTwist:
    """Rates (5,) rad/s along ``AXES`` as a probe-frame Cartesian twist (v: apex velocity in the unit of
    ``radius`` per s; omega rad/s). Turns and tilts are about the apex; ``orbit_x``, ``orbit_y`` turn the
    probe about the x, y axes through the point ``radius`` deep on the beam (the heart centre when the
    beam points at it): ``omega = (o_x, o_y, 0)``, ``v = -radius * (omega x e_z) = radius * (-o_y, o_x, 0)``."""
    r = np.asarray(rates, dtype=np.float64)
    omega = np.array([r[1] + r[3], r[2] + r[4], r[0]])
    return CartesianTwist(float(radius) * np.array([-r[4], r[3], 0.0]), omega)


def probe_twist_to_axis_rates(twist: CartesianTwist, radius: float) -> Array:
    """The inverse of :func:`axis_rates_to_probe_twist`: a probe-frame twist (v in the unit of ``radius`` per s,
    omega rad/s) as rates (5,) along ``AXES`` (the apex's velocity along the beam, ``v_z``, has no axis and is
    dropped). The orbits carry the apex's sideways velocity, ``o_x = v_y / radius`` and ``o_y = -v_x / radius``;
    the tilts, the rest of omega about x and y."""
    v, omega = np.asarray(twist.v, dtype=np.float64), np.asarray(twist.omega, dtype=np.float64)
    o_x, o_y = v[1] / float(radius), -v[0] / float(radius)
    return np.array([omega[2], omega[0] - o_x, omega[1] - o_y, o_x, o_y])
