"""``echoposed eval phase``: phase invariance of an ONNX ensemble (``echoposed_ros.eval.phase``).

Phantom patients by seed (``--seeds``), in a style (``--style``), with their own cardiac motion or
motion drawn wider than training's (``--motion wide``: heart rate 45-140 bpm, EF 25-75 %, long-axis
shortening 6-22 %, twist 0-20 deg), ``--frames`` per cycle. Writes JSON (``--json``) and prints the
ratio of the median spread over a cycle to the median estimated distance between poses 10-20 deg apart;
``--fusion-window S``: of the pose node's cycle-fused estimates (``eval.phase.fused_phase_invariance``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import EchoposedError
from .errors import UsageError

__all__ = ['add_arguments', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--seeds', required=True, metavar='A-B', help='phantom patient seeds: A-B, or A,B,C')
    parser.add_argument('--style', default=None, help='acquisition style (shipped name or YAML path)')
    parser.add_argument('--motion', choices=('default', 'wide'), default='default',
                        help="each seed's own cardiac motion, or motion drawn wider than training's")
    parser.add_argument('--frames', type=int, default=10, help='frames per cardiac cycle (default 10)')
    parser.add_argument('--poses', type=int, default=12, help='poses per patient (default 12)')
    parser.add_argument('--model', metavar='ONNX', default=None, help='default: the shipped model')
    parser.add_argument('--threads', type=int, default=2, help='onnxruntime intra-op threads')
    parser.add_argument('--fusion-window', type=float, default=0.0, metavar='S',
                        help="s: figures of the pose node's cycle-fused estimates over S seconds, the probe held "
                             'still (docs/estimator.md); 0 (default): of single frames')
    parser.add_argument('--json', required=True, metavar='PATH', help='where to write the figures')


def run(args: argparse.Namespace) -> int:
    from echoposed_ros.estimator import require_default_model
    from echoposed_ros.eval.frames import frame_estimator, frame_predictor
    from echoposed_ros.eval.phase import PhaseProtocol, fused_phase_invariance, phase_invariance
    from echoposed_sim import phantom

    from .eval_calibration import parse_seeds

    t0 = time.perf_counter()
    try:
        seeds = parse_seeds(args.seeds)
        style = None
        if args.style:
            shipped = phantom.style_path(args.style)
            style = phantom.load_style(args.style if Path(args.style).is_file() or not shipped.is_file() else shipped)
        model = Path(args.model) if args.model else require_default_model()
        est = frame_estimator(model, 0, args.threads, False)
        sector, predict = frame_predictor(est, 0)
        volumes = (phantom.make_phantom(s, style, args.frames,
                                        heart=phantom.wide_motion(s) if args.motion == 'wide' else None)
                   for s in seeds)
        if not args.fusion_window >= 0:
            raise UsageError(f'--fusion-window {args.fusion_window}: expected a time >= 0 (s)')
        if args.fusion_window > 0:
            result = fused_phase_invariance(volumes, est.predict_members, sector, args.fusion_window,
                                            PhaseProtocol(poses=args.poses))
        else:
            result = phase_invariance(volumes, predict, sector, PhaseProtocol(poses=args.poses))
    except EchoposedError as exc:
        print(f'echoposed eval phase: {exc}', file=sys.stderr)
        return 2
    result.update(model=str(model), seeds=seeds, style=args.style or 'default', motion=args.motion,
                  wall_s=time.perf_counter() - t0)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + '\n')
    print(f"spread over a cycle {result['median_spread_deg']:.1f} deg (median), estimated distance between poses "
          f"10-20 deg apart {result['median_estimated_distance_deg']:.1f} deg: ratio {result['ratio']:.2f}")
    print(f'wrote {out}')
    return 0
