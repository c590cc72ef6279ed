"""Coasting by odometry: carry the last trusted pose estimate forward by the commands given since.

When the ensemble turns unsure on the way to a target (views between here and there it reads
badly), the arm still knows how it moved. :class:`Anchor` is the last trusted estimate ``(R_v, R_p)``
with the body twist held since; :func:`advance` moves it as that command moves the probe
(``R <- R exp(omega dt)`` per factor, :func:`echoposed_ros.geometry.right_apply`; canonical poses are
gauge-fixed again, :func:`echoposed_ros.geometry.step`), so the controller can go on steering by
where the probe must be now. :func:`agrees` tells whether a new estimate is where the reckoning says
(a lone confident frame among unsure ones is trusted only then). Angles rad, times s.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from echoposed_ros.geometry import Pose, effective_error, right_apply, step

from .controller import BodyTwist

__all__ = ['Anchor', 'advance', 'agrees', 'carried']


@dataclass(frozen=True)
class Anchor:
    """pose: where the probe is by the reckoning at ``at`` (s, controller clock), in the frame and gauge of the
    estimate it came from (``ungauged``: an un-gauge-fixed ensemble mean, else canonical); command: the body
    twist (rad/s) held since ``at``; received: s, reception of the frame the reckoning started from."""

    pose: Pose
    ungauged: bool
    command: BodyTwist
    at: float
    received: float


def advance(anchor: Anchor, now: float) -> Anchor:
    """``anchor`` carried to time ``now`` (s) by its command (no motion for ``now <= anchor.at``)."""
    dt = max(0.0, float(now) - anchor.at)
    if dt == 0.0:
        return replace(anchor, at=max(anchor.at, float(now)))
    w = anchor.command
    pose = (Pose(*right_apply(anchor.pose, w.orbit * dt, w.probe * dt)) if anchor.ungauged
            else step(anchor.pose, w.orbit, w.probe, dt))
    return replace(anchor, pose=pose, at=float(now))


def carried(anchor: Anchor | None, now: float, coast_time: float) -> Anchor | None:
    """``anchor`` advanced to ``now`` (s) while it may still be coasted on (at most ``coast_time`` s after the
    reception of the frame it started from); None when there is none or it is too old."""
    if anchor is None or now - anchor.received > coast_time:
        return None
    return advance(anchor, now)


def agrees(anchor: Anchor, pose: Pose, tolerance: float) -> bool:
    """Whether ``pose`` (same frame and gauge as the anchor) lies within ``tolerance`` rad (effective error)
    of where the anchor says the probe is."""
    return bool(effective_error(anchor.pose, pose) <= tolerance)
