"""Round trip: the simulator records a bag during a live run, ``echoposed bag eval`` scores it, and
the scores match what the live run's monitor saw.

The live run is ``echoposed launch sim_guidance estimator:=oracle robot:=kinematic record:=BAG``
(the controller is fed ground truth, so the run converges without a trained model); the offline
estimator is a tiny synthetic ONNX model (the pipeline is under test, not the model).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from echoposed_ros.bag.reader import read_bag
from echoposed_ros.paths import config_dir

# Retries: only the tests that start several processes get one (flaky(reruns=1)): such processes
# find each other by DDS discovery, whose timing a busy 2-core machine stretches. Without retries
# these tests failed about 1 run in 5 until stop-time defects were fixed (a lost target answer, a
# duplicate node name, a take during shutdown, a middleware teardown hang); 7 of 7 runs passed after.
# The deterministic tests get no retry.

ECHOPOSED = Path(sys.executable).with_name('echoposed')
# the recorder closed its bag and exited: 0, or its teardown alarm after the bag was closed
# (a middleware hang in destroy_node; echoposed_ros/nodes/process.py)
CLOSED = (0, -signal.SIGALRM)


@pytest.fixture(scope='module')
def phantom(tmp_path_factory):
    from echoposed_sim.phantom import make_phantom
    from echoposed_sim.volume_io import save_volume
    return save_volume(make_phantom(1000), tmp_path_factory.mktemp('phantom') / 'patient1000.npz')


def _launch(tmp, *arguments, duration=60):
    bag, summary = tmp / 'bag', tmp / 'summary.json'
    result = subprocess.run([str(ECHOPOSED), 'launch', 'sim_guidance', *arguments, f'record:={bag}', '--quiet',
                             '--duration', str(duration), '--stop-after-converged', '1.0', '--summary', str(summary)],
                            capture_output=True, text=True, timeout=duration + 90)
    assert summary.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    return bag, json.loads(summary.read_text()), result


@pytest.fixture(scope='module')
def live_run(tmp_path_factory, phantom):
    """One recorded live run with the oracle: (bag, launch summary, the launch's CompletedProcess, phantom)."""
    bag, summary, result = _launch(tmp_path_factory.mktemp('oracle'), f'volume:={phantom}', 'estimator:=oracle',
                                   'robot:=kinematic', 'cardiac_motion:=false', 'start_seed:=1')
    # a failed run errors the fixture (not one test), and the retry of the first test launches again
    assert result.returncode == 0 and summary['ended'] == 'done', result.stdout[-3000:] + result.stderr[-3000:]
    return bag, summary, result, phantom


@pytest.fixture(scope='module')
def synthetic_model(tmp_path_factory):
    from scipy.spatial.transform import Rotation

    from echoposed_ros.estimator.synthetic import write_model
    rng = np.random.default_rng(0)
    members = Rotation.from_rotvec(rng.normal(0, 0.05, (6, 3))).as_matrix()
    # the simulator's image size, so the estimator uses the model's fan (no per-image fan detection,
    # which would depend on which image came first) and offline and live estimates agree exactly
    return write_model(tmp_path_factory.mktemp('model') / 'synthetic.onnx', members[:3], members[3:], gain=2.0,
                       height=128, width=128)


@pytest.mark.slow
# retry: its live_run launches the whole graph (a failed run errors the fixture; the retry relaunches it)
@pytest.mark.flaky(reruns=1)
def test_recorder_closes_the_bag_when_the_launch_stops(live_run):
    bag, summary, result, _ = live_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert summary['ended'] == 'done' and summary['exit_codes']['echoposed_recorder'] in CLOSED
    meta = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    counts = {t['topic_metadata']['name']: t['message_count'] for t in meta['topics_with_message_count']}
    for topic in ('/probe/image', '/probe/true_pose', '/probe/cmd', '/guidance/status', '/diagnostics'):
        assert counts.get(topic, 0) > 0, counts
    assert meta['custom_data']['echoposed.target_view'] == 'A4C'


@pytest.mark.slow
def test_bag_eval_matches_the_live_run(live_run, synthetic_model, tmp_path):
    bag, summary, _, _ = live_run
    out = tmp_path / 'eval.json'
    result = subprocess.run([str(ECHOPOSED), 'bag', 'eval', str(bag), '--model', str(synthetic_model),
                             '--json', str(out), '--plots', str(tmp_path / 'plots')],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    scores = json.loads(out.read_text())
    assert scores['failed'] == [] and scores['scored'] == 1
    r = scores['bags'][0]
    # the ground-truth error to the target at the end of the bag is what the live monitor reported
    assert r['target']['name'] == 'A4C' and 'recorded in the bag' in r['target']['source']
    assert r['target']['final_error_deg'] == pytest.approx(summary['final_error_deg'], abs=0.25)
    assert r['target']['initial_error_deg'] > 10
    assert r['guidance']['final_state'] == summary['final_state'] == 'converged'
    # the recorder and the monitor saw about the same stream (the monitor, spun one callback per
    # launcher tick, drops best-effort images when the machine is busy; the recorder starts with the
    # nodes and misses what comes before discovery matches it with the simulator: on a loaded 2-core
    # machine 3 s of a 10 s run, 211 images against the monitor's 307). Dropped frames inside the
    # recording are caught by its image rate below; this catches a recorder that started or stopped far off.
    assert 0.5 <= r['images'] / summary['images'] <= 1.6, (r['images'], summary['images'])
    # images and true poses leave the simulator together each tick; the recorder's subscriptions to the two
    # topics are matched by discovery separately, a few frames apart on a loaded machine (211 against 216 seen)
    assert abs(r['images'] - r['ground_truth_samples']) <= max(3, 0.05 * r['images'])
    assert 2.0 < r['recording_s'] <= summary['duration_s'] + 1.0
    assert r['image_rate_hz'] == pytest.approx(30.0, rel=0.2)
    limits = yaml.safe_load((config_dir() / 'controller.yaml').read_text())['echoposed_controller']['ros__parameters']
    # (the bag may miss the first commands, before discovery matched the recorder, and the monitor may
    # drop some on a busy machine: the maxima are each checked against the limit, not against each other)
    # (commands at the 30 Hz control rate, as the images: under a MultiThreadedExecutor the controller
    # fell to 3-11 Hz in some launches; docs/graph.md)
    assert 0 < r['commands']['max_orbit_speed'] and r['commands']['count'] > 0.5 * r['images']
    assert r['commands']['max_orbit_speed'] <= limits['max_orbit_speed'] + 1e-9
    # the offline estimator ran on every image and was scored against ground truth on every image whose
    # truth sample is in the bag (the recorder can match the image topic a frame before the truth topic,
    # or stop between the two writes of the last frame: CI, stop 13, had 205 of 206)
    assert r['offline']['estimated'] == r['images']
    c = read_bag(bag, load_images=False)
    with_truth = int(np.isin(c.images.stamps, c.truth.stamps).sum())
    assert with_truth >= r['images'] - 3
    assert r['offline']['matched'] == with_truth
    assert 0 <= r['offline']['error_deg']['median'] <= 180
    series = r['series']
    assert len(series['target']['t']) == r['ground_truth_samples']
    assert (tmp_path / 'plots' / 'bag.png').stat().st_size > 10_000


@pytest.mark.slow
def test_target_view_from_the_volume_file_and_from_a_bag_time(live_run, tmp_path):
    from echoposed_ros.bag.offline import TargetSpec, evaluate_bag

    bag, summary, _, phantom = live_run
    # the bag stores A4C, so the stored pose is used; it equals the volume's own A4C
    r, _ = evaluate_bag(bag, None, TargetSpec(view='a4c', volume=phantom))
    assert r['target']['final_error_deg'] == pytest.approx(summary['final_error_deg'], abs=0.25)
    r2, _ = evaluate_bag(bag, None, TargetSpec(view='A2C', volume=phantom))
    assert r2['target']['name'] == 'A2C' and 'standard view of' in r2['target']['source']
    assert r2['target']['final_error_deg'] > 5.0  # guided to A4C, so far from A2C
    r3, _ = evaluate_bag(bag, None, TargetSpec(bag_time_s=r['recording_s'] - 0.1))
    assert r3['target']['final_error_deg'] < 0.5  # the probe held still at the end
    out = tmp_path / 'eval.json'
    result = subprocess.run([str(ECHOPOSED), 'bag', 'eval', str(bag), '--no-model', '--target', 'A2C',
                             '--json', str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == (f'echoposed bag eval: {bag}: target view A2C is not stored in the bag '
                                     '(it stores A4C); give --volume FILE to read its pose')
    assert json.loads(out.read_text())['failed'][0]['bag'] == str(bag)


@pytest.mark.slow
# retry: a launched graph (pose node, recorder) fed by a player here; discovery can lag on a busy machine
@pytest.mark.flaky(reruns=1)
def test_live_nodes_scored_on_a_replayed_recording(live_run, synthetic_model, tmp_path):
    """Replay the recorded run into the live pose node (``launch guidance`` with the synthetic model,
    recording): the new bag holds the replayed images and truth and the live estimates, and
    bag eval's offline estimator (set up like the pose node) gives, image for image, the poses the
    live node published; latencies are real (``--restamp``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'nodes'))
    from ros_harness import Graph, wait_for

    from echoposed_ros.bag.offline import estimate_images, evaluate_bag
    from echoposed_ros.bag.player import play_bag
    from echoposed_ros.bag.reader import read_bag
    from echoposed_ros.cli.bag import _estimator
    from echoposed_ros.geometry import effective_error

    recorded, out = live_run[0], tmp_path / 'replayed'
    # (the synthetic model ignores flips, so mirroring would make its ensemble mean degenerate: off)
    launch = subprocess.Popen([str(ECHOPOSED), 'launch', 'guidance', f'model:={synthetic_model}', 'mirror_tta:=false',
                               f'record:={out}',
                               '--quiet', '--duration', '90', '--summary', str(tmp_path / 'summary.json')],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    graph = Graph()
    try:
        player = graph.node('player')
        # the pose node and the recorder both listen before the first image
        assert wait_for(lambda: player.count_subscribers('/probe/image') >= 2, timeout=60)
        counts = play_bag(player, recorded, rate=2.0, topics=['/probe/image', '/probe/true_pose'], restamp=True)
        assert counts['/probe/image'] > 100
        time.sleep(1.0)
    finally:
        graph.shutdown()
        launch.send_signal(signal.SIGINT)  # Ctrl-C: the launcher stops the nodes, the recorder closes the bag
        output, _ = launch.communicate(timeout=60)
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['ended'] == 'interrupted' and summary['exit_codes']['echoposed_recorder'] in CLOSED, output[-3000:]
    c = read_bag(out)
    assert len(c.images) >= 0.9 * counts['/probe/image'] and c.truth is not None
    assert c.poses is not None and len(c.poses) >= 0.5 * len(c.images), c.counts
    estimator, _ = _estimator(type('Args', (), {'no_model': False, 'model': synthetic_model})())
    estimator.mirror = False   # as the launch above
    est = estimate_images(estimator, c.images.images, c.images.encodings, c.images.stamps)
    index = {int(s): i for i, s in enumerate(est.stamps)}
    pairs = [(index[int(s)], j) for j, s in enumerate(c.poses.stamps) if int(s) in index]
    assert len(pairs) >= 0.9 * len(c.poses)
    i, j = np.array(pairs).T
    diff = effective_error((est.orbit[i], est.probe[i]), (c.poses.orbit[j], c.poses.probe[j]))
    assert np.degrees(diff).max() < 0.01
    assert np.allclose(est.sigma2[i], c.poses.sigma2[j], rtol=1e-4, atol=1e-10)
    report, _ = evaluate_bag(out, estimator)
    latency = report['recorded']['latency_ms']
    assert 0 < latency['median'] < 500, latency  # restamped: the live node's latency, not the bag's age
    assert report['recorded']['matched'] >= 0.9 * len(c.poses)


def test_record_argument_adds_the_recorder_node(tmp_path):
    from echoposed_ros.bringup.description import LaunchError, resolve

    for launch in ('sim_guidance', 'guidance'):
        _, nodes = resolve(launch, {'record': str(tmp_path / 'new_bag')})
        recorder = [n for n in nodes if n.module == 'echoposed_ros.bag.recorder']
        assert len(recorder) == 1 and recorder[0].executable == 'bag_recorder'
        assert recorder[0].parameters['output'] == str(tmp_path / 'new_bag')
        _, nodes = resolve(launch, {})
        assert not [n for n in nodes if n.module == 'echoposed_ros.bag.recorder']
    with pytest.raises(LaunchError, match='exists already'):
        resolve('sim_guidance', {'record': str(tmp_path)})
