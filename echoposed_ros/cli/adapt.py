"""``echoposed adapt``: adapt the estimator to one patient from the robot's own motion (docs/adaptation.md).

The sweep comes from one of:
- ``--bag BAG``: a recorded sweep, the frames of ``--image-topic`` with the arm's probe pose of
  ``--pose-topic`` (``geometry_msgs/PoseStamped``; any fixed frame) at each frame's stamp; by default
  only the span the bag's ``/guidance/status`` reports ``sweeping`` (a bag of a live adaptation), else
  ``--start`` / ``--seconds`` or the whole bag;
- ``--recording FILE``: a sweep recording already written (``.npz``, the live adapt node's output);
- ``--sim SEED``: the sweep run in the simulator on phantom patient SEED (``--style``), from the
  base pose or a random start (``--start-seed``).
The fine-tune (needs torch) warm-starts from ``--model`` with the model's own recipe, draws
``--sweep-weight`` of its steps from the sweep and the rest from phantom patients, runs for
``--budget`` of training time, and writes ``OUT/adapted.onnx`` and ``OUT/adapt.json``.
``--record-only`` writes ``OUT/recording.npz`` and stops. Exit status 0, or 2 with one line naming
what was wrong.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

__all__ = ['add_arguments', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--bag', help='a recorded sweep (rosbag2 folder or .mcap): images and the arm probe pose')
    src.add_argument('--recording', help='a sweep recording (.npz written by echoposed adapt or the adapt node)')
    src.add_argument('--sim', type=int, metavar='SEED', help='run the sweep in the simulator on phantom patient SEED')
    parser.add_argument('--out', required=True, help='output folder (recording, prepared sweep, run, adapted.onnx)')
    parser.add_argument('--model', help='the model to adapt (default: the shipped models/echoposed_k5.onnx)')
    parser.add_argument('--image-topic', default='/probe/image', help='--bag: image topic (default /probe/image)')
    parser.add_argument('--pose-topic', default='/probe/pose',
                        help='--bag: the arm probe pose, geometry_msgs/PoseStamped (default /probe/pose)')
    parser.add_argument('--start', type=float, default=None,
                        help="--bag: sweep start, s from the first frame (default: where the bag's guidance/status "
                             'says sweeping, else the first frame)')
    parser.add_argument('--seconds', type=float, default=None,
                        help='--bag: sweep length, s (default: the recorded sweep, else to the end)')
    parser.add_argument('--orbit-radius', type=float, default=0.075,
                        help="m, apex to heart centre (the controller's orbit_radius; --sim: the phantom's own)")
    parser.add_argument('--style', default='', help='--sim: acquisition style (name in sim/styles or YAML path)')
    parser.add_argument('--start-seed', type=int, default=-1,
                        help='--sim: draw where the probe is placed on the apical window (seed): any turn about the '
                             'beam, tilts and orbit up to --start-offset-deg; -1 = the base pose')
    parser.add_argument('--start-offset-deg', type=float, default=5.0,
                        help='--sim: largest tilt and orbit of a drawn start (deg, default 5)')
    parser.add_argument('--budget', default='5m', help='training time (90s, 5m; a bare number is minutes)')
    parser.add_argument('--steps', type=int, default=0,
                        help='that many training steps instead of --budget (a run that does not depend on the '
                             "machine's speed or load)")
    parser.add_argument('--sweep-weight', type=float, default=0.5, help='share of the steps drawn from the sweep')
    parser.add_argument('--phantom-seeds', default='0-19', help='phantom patients of the other steps')
    parser.add_argument('--lr', type=float, default=0.001, help='peak Muon learning rate (AdamW at a tenth)')
    parser.add_argument('--holdout', type=float, default=0.25,
                        help="share of the sweep's held poses kept out of training; the checkpoint that reads them "
                             'best is exported (0: the last one)')
    parser.add_argument('--distill', type=float, default=0.0,
                        help='weight of the model itself as a frozen teacher on the phantom steps: it holds what '
                             "the phantoms taught while the sweep's steps learn the patient (0: none)")
    parser.add_argument('--blend', type=float, default=None,
                        help='share of the fine-tuned weights in the exported model, the rest the original '
                             "model's (1: the fine-tune alone; less keeps more of what the model knew elsewhere; "
                             'default: AdaptSettings.blend, docs/adaptation.md)')
    parser.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument('--cache', default='out/cache/phantoms', help='phantom cache folder')
    parser.add_argument('--record-only', action='store_true', help='write OUT/recording.npz and stop')
    parser.add_argument('--progress', action='store_true', help='show the training progress bar')


def _recording(args: argparse.Namespace):
    from echoposed_ros.adapt.recording import load_recording, record_bag, record_sim
    from echoposed_ros.adapt.sweep import plan_sweep
    if args.bag:
        start, seconds = args.start, args.seconds
        if start is None and seconds is None:
            from echoposed_ros.adapt.recording import sweep_span_s
            span = sweep_span_s(args.bag, args.image_topic)
            if span is not None:
                start, seconds = span
                print(f'{args.bag}: the recorded sweep, {start:.1f} s from the first frame for {seconds:.1f} s')
        return record_bag(args.bag, args.orbit_radius, args.image_topic, args.pose_topic, start or 0.0,
                          math.inf if seconds is None else seconds)
    if args.recording:
        return load_recording(args.recording)
    import numpy as np

    from echoposed_ros.eval.guidance.protocol import GuidanceProtocol
    from echoposed_ros.training.data import resolve_style
    from echoposed_sim.phantom import make_phantom
    volume = make_phantom(args.sim, resolve_style(args.style), 20)
    start = (volume.base_orbit, volume.base_probe)
    if args.start_seed >= 0:
        pose = GuidanceProtocol().sample(np.random.default_rng(args.start_seed), 1, volume)
        start = (pose.orbit[0], pose.probe[0])
    rec = record_sim(volume, plan_sweep(), start)
    rec.meta.update(style=args.style or 'default', start_seed=args.start_seed, start_offset_deg=args.start_offset_deg)
    return rec


def run(args: argparse.Namespace) -> int:
    from echoposed_ros.adapt import AdaptError
    from echoposed_ros.training.budget import parse_duration

    out = Path(args.out)
    rec = _recording(args)
    if args.record_only:
        path = rec.save(out / 'recording.npz')
        print(f'{path}: {len(rec)} frames, {rec.stamps_s[-1]:.1f} s')
        return 0
    try:
        from echoposed_ros.adapt.finetune import AdaptSettings, adapt_model
    except ImportError as exc:  # torch is a training dependency, not a runtime one
        raise AdaptError(f'the fine-tune needs the training dependencies ({exc}); pip install torch==2.13.0') from None
    from echoposed_ros.estimator import default_model_path
    model = Path(args.model) if args.model else default_model_path()
    settings = AdaptSettings(budget_s=parse_duration(args.budget), sweep_weight=args.sweep_weight,
                             phantom_seeds=args.phantom_seeds, muon_lr=args.lr, device=args.device,
                             holdout=args.holdout, steps=args.steps, distill=args.distill,
                             **({} if args.blend is None else {'blend': args.blend}))
    path = adapt_model(rec, model, out, settings, progress=args.progress, cache_dir=args.cache)
    record = json.loads((out / 'adapt.json').read_text())
    print(f'{path}: adapted from {model} on {record["sweep"]["frames"]} sweep frames, {record["steps"]} steps in '
          f'{record["train_s"]:.0f} s', file=sys.stdout)
    check = record.get('sweep_check')
    if check:
        print(f'held-out sweep poses ({check["holds"]} holds): {check["start_deg"]:.2f} deg before, '
              f'{check["best_deg"]:.2f} deg at step {check["best_step"]} (exported)', file=sys.stdout)
    return 0
