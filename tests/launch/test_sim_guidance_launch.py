"""Launch-level tests: the whole sim_guidance graph as live processes via ``echoposed launch``.

The controller is fed the simulator's ground truth (``estimator:=oracle``) so these check the
running graph (topics, services, rates, states, safety limits, exit codes) independently of
the learned model; the model's own accuracy is measured by ``echoposed eval``.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from echoposed_ros.paths import config_dir

# Retries: only the tests that start several processes get one (flaky(reruns=1)): such processes
# find each other by DDS discovery, whose timing a busy 2-core machine stretches. Without retries
# these tests failed about 1 run in 5 until stop-time defects were fixed (a lost target answer, a
# duplicate node name, a take during shutdown, a middleware teardown hang); 7 of 7 runs passed after.
# The deterministic tests get no retry.

ECHOPOSED = Path(sys.executable).with_name('echoposed')


@pytest.fixture(scope='module')
def phantom_file(tmp_path_factory):
    from echoposed_sim.phantom import make_phantom
    from echoposed_sim.volume_io import save_volume
    return save_volume(make_phantom(1000), tmp_path_factory.mktemp('phantom') / 'patient1000.npz')


def launch(tmp_path, *arguments, duration=90):
    summary = tmp_path / 'summary.json'
    plot = tmp_path / 'run.png'
    result = subprocess.run([str(ECHOPOSED), 'launch', 'sim_guidance', *arguments, '--quiet',
                             '--duration', str(duration), '--stop-after-converged', '1.0',
                             '--summary', str(summary), '--plot', str(plot)],
                            capture_output=True, text=True, timeout=duration + 60)
    assert summary.exists(), result.stdout + result.stderr
    return result, json.loads(summary.read_text()), plot


def controller_limits():
    p = yaml.safe_load((config_dir() / 'controller.yaml').read_text())['echoposed_controller']['ros__parameters']
    return p['max_orbit_speed'], p['max_probe_speed']


@pytest.mark.slow
# retry: a launched graph of node processes; discovery between them can lag on a busy machine
@pytest.mark.flaky(reruns=1)
@pytest.mark.parametrize('arguments', [
    ('robot:=kinematic', 'cardiac_motion:=false', 'start_seed:=1'),
    ('robot:=arm', 'cardiac_motion:=true', 'start_seed:=2', 'target:=A2C'),
    ('robot:=arm', 'cardiac_motion:=true', 'start_seed:=3', 'target:=A3C', 'command_source:=cartesian'),
], ids=['kinematic-static', 'arm-beating', 'arm-beating-cartesian'])
def test_oracle_loop_converges_through_ros_topics(tmp_path, phantom_file, arguments):
    result, summary, plot = launch(tmp_path, f'volume:={phantom_file}', 'estimator:=oracle', *arguments)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert summary['ended'] == 'done' and summary['failed_nodes'] == []
    assert summary['converged'] and summary['final_state'] == 'converged'
    assert summary['initial_error_deg'] > 10
    assert summary['final_error_deg'] < 4.0, summary
    assert summary['loop_hz'] >= 20.0, summary
    max_orbit, max_probe = controller_limits()
    assert summary['max_orbit_speed'] <= max_orbit + 1e-9
    assert summary['max_probe_speed'] <= max_probe + 1e-9
    assert plot.stat().st_size > 10_000
    # every node exits 0, or was ended by its teardown alarm after its work (middleware hang, named)
    assert all(code == 0 or (code == -signal.SIGALRM and name in summary['teardown_alarms'])
               for name, code in summary['exit_codes'].items()), summary['exit_codes']


def test_bad_launch_argument_is_refused_with_one_line(tmp_path):
    result = subprocess.run([str(ECHOPOSED), 'launch', 'sim_guidance', 'robot:=spaceship'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "echoposed launch: robot:='spaceship'; expected one of arm, kinematic"]


@pytest.mark.slow
# retry: a launched graph of node processes (all but the simulator run); discovery can lag
@pytest.mark.flaky(reruns=1)
def test_missing_volume_fails_the_run_and_names_the_node(tmp_path):
    result, summary, _ = launch(tmp_path, 'volume:=/nonexistent/heart.nii.gz', 'estimator:=oracle',
                                duration=60)
    assert result.returncode == 1
    assert summary['ended'] == 'node_exited'
    assert 'echoposed_sim' in summary['failed_nodes']
    assert 'heart.nii.gz' in result.stderr
