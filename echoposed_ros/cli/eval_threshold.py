"""``echoposed eval threshold``: sigma^2 of in-range slices against frames with no heart, per
threshold, to set the controller's ``uncertainty_threshold`` for a model (docs/policy.md)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..errors import EchoposedError

__all__ = ['add_arguments', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--seeds', metavar='A-B', required=True, help='phantom patient seeds (held out: 1000-1009)')
    parser.add_argument('--style', metavar='FILE', default=None, help='acquisition style YAML or shipped name')
    parser.add_argument('--cache', metavar='DIR', default=None, help="phantom cache folder ('' = no cache)")
    parser.add_argument('--model', metavar='ONNX', default=None, help='ONNX ensemble (default: the shipped model)')
    parser.add_argument('--mirror', action='store_true', help="test-time mirroring (the pose node's mirror_tta)")
    parser.add_argument('--slices', type=int, default=64, help='in-range slices per volume (default 64)')
    parser.add_argument('--noise-frames', type=int, default=128, help='no-heart frames (default 128)')
    parser.add_argument('--frame-size', type=int, default=0, metavar='N',
                        help="N x N 8-bit frames mapped onto the model as the pose node does (config/pose.yaml); "
                             "default 0 = slices at the model's input size")
    parser.add_argument('--threads', type=int, default=2, help='onnxruntime intra-op threads (default 2)')
    parser.add_argument('--json', required=True, metavar='PATH', help='where to write the table (JSON)')


def run(args: argparse.Namespace) -> int:
    from echoposed_ros.cli.eval_calibration import _phantoms, parse_seeds
    from echoposed_ros.estimator import require_default_model
    from echoposed_ros.eval.frames import frame_estimator, frame_predictor
    from echoposed_ros.eval.threshold import ThresholdProtocol, threshold_table
    try:
        model = Path(args.model) if args.model else require_default_model()
        est = frame_estimator(model, args.frame_size, args.threads, args.mirror)
        sector, predict = frame_predictor(est, args.frame_size)
        protocol = ThresholdProtocol(slices_per_volume=args.slices, noise_frames=args.noise_frames)
        seeds = parse_seeds(args.seeds)
        table = threshold_table(_phantoms(seeds, args.style, args.cache), predict, sector, protocol)
    except EchoposedError as exc:
        print(f'echoposed eval threshold: {exc}', file=sys.stderr)
        return 2
    out = {'model': str(model), 'mirror_tta': args.mirror, 'frame_size': args.frame_size or None, 'seeds': seeds,
           'style': args.style,
           'protocol': {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(protocol).items()}, **table}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + '\n')
    print(f"sigma^2 (rad^2) in-range median {table['in_range']['median']:.3g} p90 {table['in_range']['p90']:.3g}; "
          f"no-heart median {table['no_heart']['median']:.3g}; good (< {table['good_deg']:g} deg) "
          f"{100 * table['good_share']:.0f} %")
    print('threshold  in-range held  (good / bad)  no-heart held')
    for r in table['rows']:
        print(f"{r['threshold']:9.3g}  {100 * r['in_range_held']:12.0f} %  "
              f"({100 * (r['in_range_good_held'] or 0):3.0f} / "
              f"{100 * (r['in_range_bad_held'] or 0):3.0f} %)  {100 * r['no_heart_held']:11.0f} %")
    print(f'wrote {args.json}')
    return 0
