"""Offline scoring speed: ``echoposed bag eval`` on a 30 Hz recording, in multiples of real time.

Writes a bag like the simulator's recording (``--seconds`` s at 30 Hz: 128 x 128 mono8 sector
images, ground truth, live estimates with K members, body and Cartesian commands, guidance status,
1 Hz diagnostics) with the rosbags writer, then times the whole ``evaluate_bag`` path (read,
decode, estimate, align, score) on an ensemble of the training code's default architecture (random
weights, exported by the training code's exporter; or ``--model PATH``), in ``--rounds`` rounds. The baseline,
measured in the same run, is the same scoring with the estimator called one image at a time
(``Estimator.estimate``), as a live node does.

``realtime_factor`` = recording length / wall time of ``evaluate_bag`` (median over rounds).
Target: ``realtime_factor >= 5``. The machine is shared, so the load average is recorded, and
``realtime_factor_per_cpu_s`` = recording length / CPU time of the process (all threads) gives a
load-independent figure: the factor one otherwise idle core would reach.

    python benchmarks/bench_bag_eval.py --json out.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

TARGET_REALTIME = 5.0
RATE_HZ = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--seconds', type=float, default=20.0, help='length of the recording (default 20 s)')
    parser.add_argument('--model', type=Path, default=None,
                        help='ONNX ensemble (default: a random-weight export of the training architecture)')
    parser.add_argument('--rounds', type=int, default=3, help='timed rounds (default 3)')
    parser.add_argument('--threads', type=int, default=2, help='onnxruntime intra-op threads (default 2)')
    parser.add_argument('--batch', type=int, default=64, help='images per estimator call (default 64)')
    parser.add_argument('--seed', type=int, default=0)


def _model(args: argparse.Namespace, tmp: Path) -> tuple[Path, str]:
    """``--model``, or the training code's ensemble (default config, random weights, random adapters)
    saved as a checkpoint and exported with the training code's exporter."""
    if args.model is not None:
        return args.model, str(args.model)
    import torch
    from scipy.spatial.transform import Rotation

    from echoposed_ros.training.checkpoint import build_model
    from echoposed_ros.training.config import TrainConfig
    from echoposed_ros.training.export import export_onnx

    cfg = TrainConfig().replace(input_size=128)
    torch.manual_seed(args.seed)
    net, orch = build_model(cfg)
    with torch.no_grad():
        B = torch.tensor(Rotation.random(2 * cfg.members, random_state=args.seed).as_matrix())
        orch.adapter_orbit.copy_(B[:cfg.members])
        orch.adapter_probe.copy_(B[cfg.members:])
    checkpoint = tmp / 'random.pt'
    torch.save({'config': cfg.to_json(), 'model': net.state_dict(), 'orchestrator': orch.state_dict(),
                'step': 0, 'data': {'benchmark': 'random weights'}}, checkpoint)
    path = export_onnx(checkpoint, tmp / 'ensemble.onnx', model_name='bench_random', pin_batches=0)
    return Path(path), (f'random weights, training architecture (K={cfg.members}, widths {list(cfg.widths)}, '
                        f'{cfg.input_size} px)')


def write_recording(path: Path, seconds: float, members: int, seed: int = 0) -> int:
    """A simulator-like 30 Hz bag; returns the number of images."""
    import numpy as np
    from scipy.spatial.transform import Rotation

    from echoposed_ros.bag.typestore import typestore
    from echoposed_ros.bag.writer import BagWriter
    from echoposed_ros.estimator import model_fan

    ts = typestore().types
    rng = np.random.default_rng(seed)
    n = int(round(seconds * RATE_HZ))
    period = int(1e9 / RATE_HZ)
    t0 = 1_700_000_000_000_000_000
    mask = model_fan(128, 128, np.radians(75.0)).mask((128, 128))
    frames = [np.where(mask, rng.integers(0, 256, (128, 128)), 0).astype(np.uint8).ravel() for _ in range(16)]
    orbit = Rotation.from_rotvec(0.2 * np.sin(np.arange(n)[:, None] * [0.01, 0.013, 0.0])).as_matrix()
    probe = Rotation.from_rotvec(0.5 * np.sin(np.arange(n)[:, None] * [0.02, 0.01, 0.03])).as_matrix()

    def header(t, frame):
        return ts['std_msgs/msg/Header'](stamp=ts['builtin_interfaces/msg/Time'](sec=t // 10**9, nanosec=t % 10**9),
                                         frame_id=frame)

    def quat(r):
        x, y, z, w = Rotation.from_matrix(r).as_quat()
        return ts['geometry_msgs/msg/Quaternion'](x=x, y=y, z=z, w=w)

    v3 = ts['geometry_msgs/msg/Vector3']
    topics = {'/probe/image': 'sensor_msgs/msg/Image', '/probe/true_pose': 'echoposed_msgs/msg/EchoPose',
              '/echoposed/pose': 'echoposed_msgs/msg/EchoPose', '/probe/cmd': 'echoposed_msgs/msg/ProbeTwist',
              '/probe/cmd_twist': 'geometry_msgs/msg/TwistStamped',
              '/guidance/status': 'echoposed_msgs/msg/GuidanceStatus',
              '/diagnostics': 'diagnostic_msgs/msg/DiagnosticArray'}
    with BagWriter(path) as w:
        for topic, msgtype in topics.items():
            w.add_topic(topic, msgtype)
        for i in range(n):
            t = t0 + i * period
            w.write_message('/probe/image', t + 500_000, ts['sensor_msgs/msg/Image'](
                header=header(t, 'probe'), height=128, width=128, encoding='mono8', is_bigendian=0, step=128,
                data=frames[i % len(frames)]))
            w.write_message('/probe/true_pose', t + 600_000, ts['echoposed_msgs/msg/EchoPose'](
                header=header(t, 'heart'), orbit=quat(orbit[i]), probe=quat(probe[i]), uncertainty=0.0,
                member_orbit=[], member_probe=[], inference_time=0.0))
            w.write_message('/echoposed/pose', t + 12_000_000, ts['echoposed_msgs/msg/EchoPose'](
                header=header(t, 'model'), orbit=quat(orbit[i]), probe=quat(probe[i]), uncertainty=0.01,
                member_orbit=[quat(orbit[i])] * members, member_probe=[quat(probe[i])] * members,
                inference_time=0.008))
            w.write_message('/probe/cmd', t + 13_000_000, ts['echoposed_msgs/msg/ProbeTwist'](
                header=header(t, 'probe'), orbit=v3(x=0.1, y=0.0, z=0.0), probe=v3(x=0.0, y=0.1, z=0.0)))
            twist = ts['geometry_msgs/msg/Twist'](linear=v3(x=0.0, y=0.0, z=0.0), angular=v3(x=0.1, y=0.0, z=0.0))
            w.write_message('/probe/cmd_twist', t + 13_000_000, ts['geometry_msgs/msg/TwistStamped'](
                header=header(t, 'probe'), twist=twist))
            w.write_message('/guidance/status', t + 13_000_000, ts['echoposed_msgs/msg/GuidanceStatus'](
                header=header(t, 'probe'), state=1, state_name='guiding', target='A4C', effective_error=0.2,
                orbit_error=0.1, probe_error=0.1, uncertainty=0.01, frames_within_tolerance=0,
                view_match=float('nan'), disagree=False,
                cue='rotate clockwise 10 deg'))
            if i % int(RATE_HZ) == 0:
                status = ts['diagnostic_msgs/msg/DiagnosticStatus'](
                    level=0, name='echoposed_sim: world', message='30 Hz', hardware_id='',
                    values=[ts['diagnostic_msgs/msg/KeyValue'](key='rate_hz', value='30.0')])
                w.write_message('/diagnostics', t + 1_000_000, ts['diagnostic_msgs/msg/DiagnosticArray'](
                    header=header(t, ''), status=[status]))
    return n


class _OneByOne:
    """The baseline estimator: ``estimate_batch`` answered one ``estimate`` call per image."""

    def __init__(self, estimator):
        self.estimator = estimator
        self.path = estimator.path

    def estimate_batch(self, images, encodings=None, names=None):
        encodings = encodings or [None] * len(images)
        return [self.estimator.estimate(im, enc) for im, enc in zip(images, encodings)]


def run(args: argparse.Namespace) -> dict:
    import platform

    import numpy as np

    from echoposed_ros.bag.offline import evaluate_bag
    from echoposed_ros.estimator import Estimator

    with tempfile.TemporaryDirectory(prefix='bench-bag-') as tmp:
        tmp = Path(tmp)
        model, model_note = _model(args, tmp)
        est = Estimator(model, intra_op_threads=args.threads)
        bag = tmp / 'recording'
        n = write_recording(bag, args.seconds, est.members, args.seed)
        evaluate_bag(bag, est, batch_size=args.batch)  # warm-up (sessions, caches)
        batched, cpu, single, reports = [], [], [], []
        for _ in range(args.rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            report, _ = evaluate_bag(bag, est, batch_size=args.batch)
            batched.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            reports.append(report)
            t0 = time.perf_counter()
            evaluate_bag(bag, _OneByOne(est), batch_size=args.batch)
            single.append(time.perf_counter() - t0)
        bag_bytes = sum(f.stat().st_size for f in bag.iterdir())
    recording_s = n / RATE_HZ
    wall = float(np.median(batched))
    last = reports[-1]
    result = {
        'images': n, 'recording_s': recording_s, 'rate_hz': RATE_HZ, 'bag_bytes': int(bag_bytes),
        'eval_median_s': wall, 'eval_min_s': float(np.min(batched)),
        'realtime_factor': recording_s / wall,
        'eval_cpu_median_s': float(np.median(cpu)),
        'realtime_factor_per_cpu_s': recording_s / float(np.median(cpu)),
        'images_per_s': n / wall,
        'read_s': last['read_s'], 'estimate_s': last['offline']['estimate_s'],
        'baseline_one_by_one_median_s': float(np.median(single)),
        'baseline_realtime_factor': recording_s / float(np.median(single)),
        'batched_vs_one_by_one': float(np.median(single)) / wall,
        'model': model_note, 'members': est.members, 'batch': args.batch, 'threads': args.threads,
        'rounds': args.rounds,
        'target': {'realtime_factor_min': TARGET_REALTIME},
        'machine': {'platform': platform.platform(), 'python': platform.python_version(),
                    'load_avg_1min': __import__('os').getloadavg()[0]},
    }
    result['targets_met'] = bool(result['realtime_factor'] >= TARGET_REALTIME)
    return result


def summary(result: dict) -> str:
    return (f"bag eval: {result['images']} images ({result['recording_s']:.0f} s at {result['rate_hz']:g} Hz) "
            f"scored in {result['eval_median_s']:.2f} s = {result['realtime_factor']:.1f}x real time "
            f"(target >= {TARGET_REALTIME:g}; read {result['read_s']:.2f} s, estimate {result['estimate_s']:.2f} s; "
            f"{result['realtime_factor_per_cpu_s']:.1f}x per CPU second, "
            f"load {result['machine']['load_avg_1min']:.1f}); "
            f"one image per call: {result['baseline_realtime_factor']:.1f}x; batched is "
            f"{result['batched_vs_one_by_one']:.1f}x faster; targets {'met' if result['targets_met'] else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument('--json', metavar='PATH', help='write the figures as JSON here')
    args = parser.parse_args(argv)
    result = run(args)
    print(summary(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
