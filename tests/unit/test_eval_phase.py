"""Phase invariance figures (eval/phase.py): spread over a cycle against distance between poses."""
from __future__ import annotations

import numpy as np
import pytest

from echoposed_ros.eval.phase import PhaseProtocol, _spread, phase_invariance
from echoposed_ros.geometry import rot_x, rot_z
from echoposed_ros.training.toy import toy_volume
from echoposed_sim.sector import SectorGeometry

SECTOR = SectorGeometry(np.deg2rad(75.0), 150.0, 32, 32)


def test_spread_is_the_largest_effective_distance_between_phases():
    probe = rot_z(np.deg2rad([0.0, 3.0, -4.0, 1.0]))
    orbit = np.broadcast_to(np.eye(3), probe.shape)
    assert np.degrees(_spread(orbit, probe)) == pytest.approx(7.0)


def test_a_phase_blind_estimator_has_no_spread_and_the_partners_are_10_to_20_deg_away():
    vols = [toy_volume(s, n=24, frames=4, spacing=6.0) for s in (0, 1)]
    calls = []

    def by_brightness(images):
        """A fake estimator: the probe turned about x by the image's mean brightness (the toy heart beats,
        so the brightness changes with the phase)."""
        calls.append(len(images))
        m = images.reshape(len(images), -1).mean(axis=1)
        return np.broadcast_to(np.eye(3), (len(images), 3, 3)), rot_x(m * 10.0), np.zeros(len(images))

    r = phase_invariance(vols, by_brightness, SECTOR, PhaseProtocol(poses=5))
    assert r['poses'] == 10 and len(r['volumes']) == 2 and calls == [20, 10, 20, 10]
    assert 10.0 <= r['median_true_distance_deg'] <= 20.0
    assert r['median_spread_deg'] > 0 and r['ratio'] == pytest.approx(r['median_spread_deg']
                                                                       / r['median_estimated_distance_deg'])

    def constant(images):
        return np.broadcast_to(np.eye(3), (len(images), 3, 3)), rot_x(np.full(len(images), 0.3)), np.zeros(len(images))

    still = phase_invariance(vols, constant, SECTOR, PhaseProtocol(poses=5))
    assert still['median_spread_deg'] == pytest.approx(0.0, abs=1e-6) and np.isnan(still['ratio'])


def test_cycle_fusion_takes_most_of_the_phase_out_of_the_published_estimate():
    """The same phase-driven fake estimator as above, as members (K = 2): the pose node's fused estimate
    over about a cycle moves far less across the cycle than single frames, over the same poses."""
    from echoposed_ros.eval.phase import fused_phase_invariance

    vols = [toy_volume(s, n=24, frames=4, spacing=6.0) for s in (0, 1)]

    def members(images):
        m = images.reshape(len(images), -1).mean(axis=1)
        probe = rot_x(m * 10.0)
        return (np.broadcast_to(np.eye(3), (len(images), 2, 3, 3)), np.stack([probe, probe], axis=1),
                np.zeros(len(images)))

    def single(images):
        v, p, s = members(images)
        return v[:, 0], p[:, 0], s

    frame = phase_invariance(vols, single, SECTOR, PhaseProtocol(poses=5))
    cycle = vols[0].cycle_s                   # 4 frames a cycle: a window of 0.6 cycle fuses 3 of them
    fused = fused_phase_invariance(vols, members, SECTOR, 0.6 * cycle, PhaseProtocol(poses=5))
    assert fused['poses'] == 10 and fused['fusion_window_s'] == pytest.approx(0.6 * cycle)
    assert 10.0 <= fused['median_true_distance_deg'] <= 20.0
    assert 0 < fused['median_spread_deg'] < 0.5 * frame['median_spread_deg']
    whole = fused_phase_invariance(vols, members, SECTOR, 0.8 * cycle, PhaseProtocol(poses=5))
    assert whole['median_spread_deg'] == pytest.approx(0.0, abs=1e-6)   # the window holds exactly one cycle
