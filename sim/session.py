"""A simulation session: a volume, a world holding the probe, and the slicer, ticking in time.

The pure core of the sim node (no rclpy), also used by offline evaluation. Commands are
velocities held until the next command; when none has come for ``command_timeout_s`` the probe
holds still (fail safe). A tick moves the probe by every command in force during it, each for its
share of the tick (by the ``clock``: from when it was received to when the next one was), as a robot's
servo loop, many times faster than the frames, would: a command that arrives between two ticks is
neither lost nor executed twice, however the sender's timer beats against the frames. A command
holding NaN or inf raises :class:`SimError` and is not applied.
Time in seconds; twists in rad/s (body frames, docs/method.md section 6) or m/s + rad/s (Cartesian).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from echoposed_ros.geometry import Pose

from .errors import SimError
from .sector import SectorGeometry
from .slicer import PreparedVolume, prepare_volume, slice_volume
from .volume import Volume
from .world import ProbeWorld, WorldStatus

__all__ = ['SimError', 'SimFrame', 'SimSession']

#: A held command: ``('body', omega_v, omega_p, '')`` (rad/s) or ``('cartesian', v, omega, frame)`` (m/s, rad/s).
Command = tuple[str, np.ndarray, np.ndarray, str]


@dataclass(frozen=True)
class SimFrame:
    """One tick's output: time_s (simulated), phase (cardiac cycles, [0, 1)), the probe's actual
    pose (canonical gauge, volume frame), the image (H, W) float32 in [0, 1], world status,
    and whether a fresh command was applied this tick."""

    time_s: float
    phase: float
    pose: Pose
    image: np.ndarray
    status: WorldStatus
    commanded: bool


def _finite(x, n: int, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.shape != (n,):
        raise SimError(f'{what}: expected {n} numbers, got {a.size}')
    if not np.all(np.isfinite(a)):
        raise SimError(f'{what}: holds NaN or inf ({a.tolist()}); command dropped')
    return a


class SimSession:
    """volume + world + sector; ``tick(dt)`` advances the world and slices the image there."""

    def __init__(self, volume: Volume, world: ProbeWorld, sector: SectorGeometry, *,
                 cardiac_motion: bool = True, command_timeout_s: float = 0.5,
                 clock: Callable[[], float] | None = None, prepared: PreparedVolume | None = None) -> None:
        """``clock``: seconds by which commands are timed (their age, their shares of a tick); default this
        session's own simulated time (offline, lockstep use). A live node passes a wall clock, so a late tick
        never stretches the timeout. ``prepared``: ``volume`` already prepared for slicing (another session's
        :attr:`prepared`: sessions on one volume share one copy of the voxels); default a new one."""
        if not command_timeout_s > 0:
            raise SimError(f'command_timeout_s = {command_timeout_s}; expected > 0 s')
        if prepared is not None and prepared.volume is not volume:
            raise SimError(f"prepared: expected the prepared copy of this session's volume {volume.name!r}, "
                           f'got that of another volume ({prepared.volume.name!r})')
        self.volume = volume
        self.prepared: PreparedVolume = prepared if prepared is not None else prepare_volume(volume)
        self.world = world
        self.sector = sector
        self.cardiac_motion = cardiac_motion
        self.command_timeout_s = float(command_timeout_s)
        self.time_s = 0.0
        self._given_clock = clock
        self._command_time = -np.inf   # clock when the newest command came
        # the commands in force since the last tick, by clock: the one held then (at the tick), then each received;
        # the last is the one held now
        self._received: list[tuple[float, Command]] = []
        self._last_tick: float | None = None   # clock at the last tick

    # -- commands (velocities held until the next one or the timeout) ----------------------------

    def _clock(self) -> float:
        """s, now by the session's clock: the one passed in, else this session's simulated time."""
        return self._given_clock() if self._given_clock is not None else self.time_s

    def command_body_twist(self, omega_v, omega_p) -> None:
        """Hold body-frame angular velocities (rad/s) of the orbit and probe factors."""
        self._hold(('body', _finite(omega_v, 3, 'orbit angular velocity'),
                    _finite(omega_p, 3, 'probe angular velocity'), ''))

    def command_cartesian_twist(self, v, omega, frame: str = 'probe') -> None:
        """Hold a Cartesian probe twist: apex velocity (m/s) and angular velocity (rad/s)."""
        if frame not in ('probe', 'world'):
            raise SimError(f"twist frame {frame!r}: expected 'probe' or 'world'")
        self._hold(('cartesian', _finite(v, 3, 'linear velocity'), _finite(omega, 3, 'angular velocity'), frame))

    def _hold(self, command: Command) -> None:
        self._command_time = self._clock()
        self._received.append((self._command_time, command))

    @property
    def _command(self) -> Command | None:
        """The command held now (the newest received), None before any or after :meth:`reset`."""
        return self._received[-1][1] if self._received else None

    def command_age_s(self) -> float:
        return self._clock() - self._command_time

    def reset(self, orbit: np.ndarray, probe: np.ndarray) -> None:
        """Teleport the probe and forget any held command."""
        self._command_time = -np.inf
        self._received = []
        self.world.set_pose(orbit, probe)

    # -- time -------------------------------------------------------------------------------------

    def phase(self, time_s: float | None = None) -> float:
        """Cardiac phase in cycles [0, 1) at ``time_s`` (now by default); 0 without cardiac motion."""
        if not self.cardiac_motion:
            return 0.0
        t = self.time_s if time_s is None else time_s
        return float((t / self.volume.cycle_s) % 1.0)

    def tick(self, dt: float) -> SimFrame:
        """Move the probe by the commands in force since the last tick (:meth:`_shares`; none if the newest is
        stale), step the world by ``dt`` s, slice the image."""
        if not (np.isfinite(dt) and dt > 0):
            raise SimError(f'tick dt = {dt}; expected a positive number of seconds')
        fresh = self._command is not None and self.command_age_s() <= self.command_timeout_s
        if fresh:
            for command, share in self._shares():
                if share > 0:
                    self._apply(command, share * dt)
        self.world.step(dt)
        self.time_s += dt
        self._last_tick = self._clock()   # after the step: in lockstep use the next commands come at this time
        held = self._command
        self._received = [(self._last_tick, held)] if held is not None else []
        pose = self.world.read_pose()
        image = self.render(pose.orbit, pose.probe, self.phase())
        return SimFrame(self.time_s, self.phase(), pose, image, self.world.status(), fresh)

    def _shares(self) -> list[tuple[Command, float]]:
        """The commands in force since the last tick, each with its share of the time since (summing to 1): each
        (the one held at the last tick first) until the next, the last until now. With no time between (lockstep
        use, the clock the simulated time) the newest alone."""
        now = self._clock()
        start = self._last_tick if self._last_tick is not None else now
        span = now - start
        if not span > 0:
            return [(self._command, 1.0)]
        spans: list[tuple[Command, float]] = []
        held: Command | None = None
        t = start
        for received, command in self._received:
            received = min(max(received, start), now)
            if held is not None:
                spans.append((held, received - t))
            held, t = command, received
        spans.append((held, now - t))
        return [(command, length / span) for command, length in spans if command is not None]

    def _apply(self, command: Command, dt: float) -> None:
        kind, a, b, frame = command
        if kind == 'body':
            self.world.command_body_twist(a, b, dt)
        else:
            self.world.command_cartesian_twist(a, b, dt, frame=frame)

    def render(self, orbit: np.ndarray, probe: np.ndarray, phase: float) -> np.ndarray:
        """The image (H, W) float32 in [0, 1] at a pose (volume frame) and cardiac phase (cycles)."""
        return slice_volume(self.prepared, orbit, probe, phase, self.sector)
