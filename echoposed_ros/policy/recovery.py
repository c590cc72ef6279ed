"""Recovery from unsure views by the probe's own odometry (docs/policy.md, "Unsure views").

When the estimate stays unsure (sigma^2 above the threshold) for ``recover_after`` seconds, instead of
holding for good:

1. **return**: replay, reversed and negated, the commands given since the last confident frame, each for
   as long as it was held: the probe goes back along its own path to the last pose it was sure of
   (exact for a robot that executed them: ``g exp(xi t) exp(-xi t) = g``), and the coarse loop approaches
   again from there; at most ``max_recoveries`` returns per target;
2. **explore**: with no path left (a run that starts unsure, or returns used up), turn the probe about its
   beam at ``explore_speed``, the one motion that keeps the apex where it is, for at most
   ``explore_turn`` in all;
3. **lost**: then hold, zero twist, cue "heart lost: reposition the probe".

A confident spell ends any of them (the coarse loop takes over). A lone confident frame among unsure ones
starts the unsure clock again and stops an exploration's turn, so neither a return nor the turn begins
before another ``recover_after`` of unsure frames: a view that flickers between sure and unsure is guided
on its sure frames, not turned away from or undone (the turn so far still counts towards
``explore_turn``; a return under way goes on).
:class:`RecoveryMemory` is what is carried between control cycles; times in s, angles in rad, twists as
in :mod:`.controller`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from echoposed_ros.geometry import CartesianTwist

__all__ = ['PathStep', 'RecoveryMemory', 'RecoveryOutput', 'record_command', 'recovery_step', 'saw_confident',
           'saw_lone_confident']


class PathStep(NamedTuple):
    """One command held since the last confident frame: its probe-frame and body twists and for how long (s)."""

    cartesian: CartesianTwist
    orbit: np.ndarray
    probe: np.ndarray
    duration: float


@dataclass(frozen=True)
class RecoveryMemory:
    """path: the commands since the last confident frame; pending: the newest command and when it began
    (its duration is known at the next cycle); unsure_since: s, start of the current unsure spell (None:
    sure); replay: index of the path step being undone and the time left on it; last_now: s, the previous
    cycle; recoveries: returns made for this target; exploring: turning about the beam; turned: rad, how far."""

    path: tuple[PathStep, ...] = ()
    pending: tuple[CartesianTwist, np.ndarray, np.ndarray, float] | None = None
    unsure_since: float | None = None
    replay: tuple[int, float] | None = None
    last_now: float | None = None
    recoveries: int = 0
    exploring: bool = False
    turned: float = 0.0


class RecoveryOutput(NamedTuple):
    """``mode``: 'hold', 'return', 'explore' or 'lost'; the command (zero for hold and lost)."""

    mode: str
    cartesian: CartesianTwist
    orbit: np.ndarray
    probe: np.ndarray


_ZERO = (CartesianTwist(np.zeros(3), np.zeros(3)), np.zeros(3), np.zeros(3))
_MAX_PATH = 2000   # steps kept (a minute at 30 Hz); older ones are dropped, the return then stops short


def _close_pending(m: RecoveryMemory, now: float, cap: float) -> RecoveryMemory:
    if m.pending is None:
        return m
    cart, orbit, probe, t0 = m.pending
    step = PathStep(cart, orbit, probe, float(np.clip(now - t0, 0.0, cap)))
    return replace(m, path=(m.path + (step,))[-_MAX_PATH:], pending=None)


def saw_confident(m: RecoveryMemory, now: float) -> RecoveryMemory:
    """A confident frame: the path starts again here, the unsure spell and any return or exploration end."""
    return replace(m, path=(), pending=None, unsure_since=None, replay=None, last_now=now, exploring=False,
                   turned=0.0)


def saw_lone_confident(m: RecoveryMemory) -> RecoveryMemory:
    """A confident frame that starts no confident spell: the unsure clock starts again and an exploration
    stops turning (module docstring); a return under way goes on."""
    return replace(m, exploring=False, unsure_since=None)


def record_command(m: RecoveryMemory, now: float, cartesian: CartesianTwist, orbit: np.ndarray, probe: np.ndarray,
                   cap: float) -> RecoveryMemory:
    """A moving command given at ``now`` (guiding or coasting): closes the previous one (held at most ``cap``
    s) and opens this one."""
    m = _close_pending(m, now, cap)
    return replace(m, pending=(cartesian, np.asarray(orbit, float), np.asarray(probe, float), float(now)),
                   last_now=now)


def recovery_step(m: RecoveryMemory, now: float, *, recover_after: float, max_recoveries: int, explore_speed: float,
                  explore_turn: float, cap: float) -> tuple[RecoveryMemory, RecoveryOutput]:
    """One cycle of an unsure spell at ``now`` (module docstring)."""
    m = _close_pending(m, now, cap)
    elapsed = 0.0 if m.last_now is None else max(0.0, now - m.last_now)
    if m.unsure_since is None:
        m = replace(m, unsure_since=now)
    if m.exploring:
        m = replace(m, turned=m.turned + explore_speed * elapsed)
    if m.replay is not None:             # undoing the path: account for the time the last command was held
        i, left = m.replay
        left -= elapsed
        while left <= 1e-9 and i > 0:
            i -= 1
            left += m.path[i].duration
        if left <= 1e-9:                  # back at the last confident pose
            m = replace(m, path=(), replay=None, recoveries=m.recoveries + 1, unsure_since=now)
        else:
            m = replace(m, replay=(i, left))
    m = replace(m, last_now=now)
    if m.replay is None and not m.exploring:
        if now - m.unsure_since < recover_after:
            return m, RecoveryOutput('hold', *_ZERO)
        if m.path and m.recoveries < max_recoveries:
            m = replace(m, replay=(len(m.path) - 1, m.path[-1].duration))
    if m.replay is not None:             # undo the path step being replayed
        s = m.path[m.replay[0]]
        return m, RecoveryOutput('return', CartesianTwist(-s.cartesian.v, -s.cartesian.omega), -s.orbit, -s.probe)
    if m.turned < explore_turn and explore_speed > 0:
        m = replace(m, exploring=True)
        w = np.array([0.0, 0.0, explore_speed])
        return m, RecoveryOutput('explore', CartesianTwist(np.zeros(3), w), np.zeros(3), w)
    return m, RecoveryOutput('lost', *_ZERO)
