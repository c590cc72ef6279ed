"""The simulation session's command timing: a tick moves the probe by every command in force during it, each
for its share of the tick, so a sender whose timer beats against the frames loses no command and doubles none;
in lockstep use (the simulated clock) the newest command moves the probe for the whole tick."""
from __future__ import annotations

import numpy as np
import pytest

from echoposed_ros.geometry import so3_log
from echoposed_sim.sector import SectorGeometry
from echoposed_sim.session import SimError, SimSession
from echoposed_sim.volume import Volume
from echoposed_sim.world import KinematicWorld

DT = 1.0 / 30.0


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _session(clock=None) -> SimSession:
    volume = Volume(np.zeros((1, 8, 8, 8), np.uint8), spacing=[16.0] * 3, centre=[59.0] * 3, radius=60.0, name='empty')
    return SimSession(volume, KinematicWorld.from_volume(volume), SectorGeometry(height=8, width=8),
                      cardiac_motion=False, command_timeout_s=0.5, clock=clock)


def _turn(session: SimSession, start) -> float:
    """rad the probe has turned about its beam since ``start`` (its probe factor)."""
    return float(so3_log(start.T @ session.world.read_pose().probe)[2])


def test_each_command_moves_the_probe_for_the_part_of_the_tick_it_was_in_force():
    clock = Clock()
    s = _session(clock)
    s.tick(DT)                                          # the first tick: the clock starts here
    start = s.world.read_pose().probe
    clock.t += 0.25 * DT
    s.command_body_twist(np.zeros(3), [0.0, 0.0, 1.0])  # in force for three quarters of the tick
    clock.t += 0.5 * DT
    s.command_body_twist(np.zeros(3), [0.0, 0.0, -2.0])  # then this one for the last quarter
    clock.t += 0.25 * DT
    s.tick(DT)
    assert _turn(s, start) == pytest.approx((0.5 * 1.0 + 0.25 * -2.0) * DT, abs=1e-12)
    # the last command stays in force: the whole of the next tick
    clock.t += DT
    s.tick(DT)
    assert _turn(s, start) == pytest.approx(-2.0 * DT, abs=1e-12)


@pytest.mark.parametrize('seed', range(3))
def test_a_sender_beating_against_the_ticks_loses_and_doubles_no_command(seed):
    # ticks every DT, commands at 30 Hz jittered about the tick times: some tick intervals hold no command, some
    # two; the probe still turns by each command's rate times how long it was the newest
    rng = np.random.default_rng(seed)
    clock = Clock()
    s = _session(clock)
    s.tick(DT)
    start = s.world.read_pose().probe
    n = 300
    ticks = clock.t + DT * np.arange(1, n + 1)
    sends = ticks - DT + rng.normal(0, 0.004, n).clip(-0.015, 0.015) + 0.001
    rates = rng.uniform(-0.5, 0.5, n)
    events = sorted([(t, 0, r) for t, r in zip(sends, rates)] + [(t, 1, 0.0) for t in ticks])
    for t, is_tick, rate in events:
        clock.t = t
        if is_tick:
            s.tick(DT)
        else:
            s.command_body_twist(np.zeros(3), [0.0, 0.0, rate])
    order = np.argsort(sends)
    t_sorted, r_sorted = sends[order], rates[order]
    held = np.diff(np.append(t_sorted, ticks[-1]))          # each command until the next, the last until the end
    assert _turn(s, start) == pytest.approx(float(np.sum(r_sorted * held)), abs=1e-9)
    # what a tick that takes the newest command alone would have done: some commands lost, others doubled
    newest = [r_sorted[np.searchsorted(t_sorted, t) - 1] if np.searchsorted(t_sorted, t) else 0.0 for t in ticks]
    assert abs(float(np.sum(newest)) * DT - float(np.sum(r_sorted * held))) > 1e-3


def test_lockstep_the_newest_command_moves_the_probe_for_the_whole_tick():
    s = _session()                                      # the clock is the simulated time
    start = s.world.read_pose().probe
    s.tick(DT)
    s.command_body_twist(np.zeros(3), [0.0, 0.0, 1.0])
    s.command_body_twist(np.zeros(3), [0.0, 0.0, 0.5])
    s.tick(DT)
    assert _turn(s, start) == pytest.approx(0.5 * DT, abs=1e-12)


def test_sessions_sharing_a_prepared_volume_keep_their_own_clocks():
    # the offline evaluation runs many sessions on one bricked volume: each times its commands by its own
    # simulated time, so one that has ticked ahead (or stopped) never shifts another's commands
    first = _session()
    other = SimSession(first.volume, KinematicWorld.from_volume(first.volume), first.sector, cardiac_motion=False,
                       command_timeout_s=0.5, prepared=first.prepared)
    assert other.prepared is first.prepared
    for _ in range(5):
        first.tick(DT)
    start = other.world.read_pose().probe
    other.tick(DT)
    other.command_body_twist(np.zeros(3), [0.0, 0.0, 1.0])
    other.tick(DT)
    assert _turn(other, start) == pytest.approx(1.0 * DT, abs=1e-12)   # lockstep: the whole tick, not a share
    assert other.time_s == pytest.approx(2 * DT) and first.time_s == pytest.approx(5 * DT)


def test_a_prepared_volume_of_another_volume_is_refused():
    a, b = _session(), _session()
    with pytest.raises(SimError, match='prepared'):
        SimSession(a.volume, KinematicWorld.from_volume(a.volume), a.sector, prepared=b.prepared)
