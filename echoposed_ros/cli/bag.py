"""``echoposed bag record | play | salvage | eval``: rosbag2 (MCAP) recording, replay and offline scoring.

- ``record OUT [topics...] [--duration S]``: a recorder node for machines without ``ros2 bag``
  (default topics: images, ground truth, estimates, commands, status, diagnostics); Ctrl-C
  closes the bag cleanly.
- ``play BAG [--rate R]``: republish with the recorded timing, R times faster.
- ``salvage BAG OUT``: copy every complete message of a truncated or damaged bag (killed recorder,
  cut file) and its ``custom_data`` into a new, complete bag.
- ``eval BAG... [--model M] [--target VIEW | --target-bag-time T] --json OUT [--plots DIR]``:
  score each bag (offline estimator tracking error after alignment, sigma^2 vs error, recorded
  latency, error to target). A bag that cannot be scored is one line on stderr (the bag, the
  problem, what was expected) and an ``ok: false`` entry in the JSON; the others are still scored
  and the JSON is written. Exit code: 0 every bag scored, 1 some bag failed, 2 nothing could be
  scored (model or config/pose.yaml unusable) or the JSON could not be written.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import EchoposedError

__all__ = ['add_arguments', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest='bag_command', metavar='{record,play,salvage,eval}', required=True)
    rec = sub.add_parser('record', help='record topics into a rosbag2 (MCAP) bag until Ctrl-C or --duration')
    rec.add_argument('output', type=Path, help='bag directory to create (must not exist)')
    rec.add_argument('topics', nargs='*', help='topics (default: images, truth, estimates, commands, status, '
                     'diagnostics)')
    rec.add_argument('--duration', type=float, default=0.0, help='stop after this many seconds (0: Ctrl-C)')
    rec.add_argument('--target-view', default='', help="store this simulator view's ground-truth pose in the bag")
    play = sub.add_parser('play', help='republish a bag with its recorded timing')
    play.add_argument('bag', type=Path)
    play.add_argument('--rate', type=float, default=1.0, help='playback speed factor (default 1)')
    play.add_argument('--topics', nargs='+', default=None, help='only these topics')
    play.add_argument('--wait', type=float, default=2.0, help='s to wait for subscribers before playing')
    play.add_argument('--restamp', action='store_true', help='move header stamps to now (keeping their spacing), '
                      'so live nodes measure real latencies and stale checks see fresh data')
    sal = sub.add_parser('salvage', help='copy every complete message of a truncated bag into a new bag')
    sal.add_argument('bag', type=Path, help='truncated bag directory or .mcap file')
    sal.add_argument('output', type=Path, help='new bag directory (must not exist)')
    ev = sub.add_parser('eval', help='score recorded sessions offline (JSON, plots)')
    ev.add_argument('bags', nargs='+', type=Path, help='bag directories (or .mcap files)')
    ev.add_argument('--model', type=Path, default=None,
                    help='ONNX ensemble for offline estimation (default: the shipped model if present)')
    ev.add_argument('--no-model', action='store_true', help='skip offline estimation')
    target = ev.add_mutually_exclusive_group()
    target.add_argument('--target', default=None, metavar='VIEW',
                        help='score the error to this standard view (default: the view stored in the bag)')
    target.add_argument('--target-bag-time', type=float, default=None, metavar='T',
                        help='score the error to the ground-truth pose T s after the first image')
    ev.add_argument('--volume', type=Path, default=None, help="volume file giving --target VIEW's pose "
                    'when the bag does not store it')
    ev.add_argument('--image-topic', default=None, help='image topic (default: /probe/image, else compressed)')
    ev.add_argument('--batch', type=int, default=64, help='images per estimator call (default 64)')
    ev.add_argument('--json', type=Path, required=True, help='write the scores here')
    ev.add_argument('--plots', type=Path, default=None, help='write one PNG per bag into this folder')


def run(args: argparse.Namespace) -> int:
    return {'record': _record, 'play': _play, 'salvage': _salvage, 'eval': _eval}[args.bag_command](args)


def _salvage(args: argparse.Namespace) -> int:
    from ..bag.errors import BagError
    from ..bag.salvage import salvage_bag

    try:
        kept = salvage_bag(args.bag, args.output)
    except BagError as exc:
        print(f'echoposed bag salvage: {exc}', file=sys.stderr)
        return 1
    print(f'{args.output}: ' + ', '.join(f'{t} {n}' for t, n in kept.counts.items()))
    if kept.custom_source:
        print(f'{args.output}: custom_data from the {kept.custom_source}: '
              + (', '.join(sorted(kept.custom_data)) or 'none stored'))
    else:
        print(f'echoposed bag salvage: {args.bag}: no custom_data found (no metadata.yaml and no metadata record in '
              'the MCAP file: the recorder did not close the bag); a target view it stored is lost: score the '
              'salvaged bag with --target VIEW --volume FILE', file=sys.stderr)
    if kept.damaged_chunks:
        print(f'echoposed bag salvage: {args.bag}: {kept.damaged_chunks} damaged chunk(s) left out (CRC-32 '
              'mismatch)', file=sys.stderr)
    return 0


def _record(args: argparse.Namespace) -> int:
    from rclpy.parameter import Parameter

    from ..bag.recorder import DEFAULT_TOPICS, RecorderNode, run_recorder

    overrides = [Parameter('output', value=str(args.output)),
                 Parameter('topics', value=list(args.topics or DEFAULT_TOPICS)),
                 Parameter('duration', value=float(args.duration)),
                 Parameter('target_view', value=str(args.target_view))]
    return run_recorder(lambda: RecorderNode(parameter_overrides=overrides), 'echoposed bag record',
                        lambda node, counts: f'{args.output}: ' + (
                            ', '.join(f'{t} {n}' for t, n in counts.items()) or 'no messages'))


def _play(args: argparse.Namespace) -> int:
    import rclpy

    from ..bag.player import play_bag
    from ..nodes.process import run_node

    def play(node: Any) -> None:
        counts = play_bag(node, args.bag, rate=args.rate, topics=args.topics, wait_s=args.wait,
                          restamp=args.restamp)
        print(f'{args.bag}: published ' + ', '.join(f'{t} {n}' for t, n in counts.items()))

    return run_node(lambda: rclpy.create_node('echoposed_player'), 'echoposed bag play', job=play)


def _estimator(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The offline estimator, set up as the live pose node sets up its own (config/pose.yaml)."""
    from ..estimator import Estimator, default_model_path

    if args.no_model:
        return None, None
    path = args.model if args.model is not None else default_model_path()
    if args.model is None and not path.is_file():
        return None, f'no model: the shipped model {path} does not exist (pass --model PATH)'
    from ..config.pose import pose_config_from_yaml
    return Estimator(path, **pose_config_from_yaml().estimator_kwargs()), None


def _eval(args: argparse.Namespace) -> int:
    from ..bag.offline import TargetSpec, evaluate_bag

    try:
        estimator, note = _estimator(args)
        from ..config.pose import pose_config_from_yaml
        fusion = pose_config_from_yaml().fusion_settings()   # the pose node's cycle fusion, for the offline estimates
    except EchoposedError as exc:  # the model, or config/pose.yaml
        print(f'echoposed bag eval: {exc}', file=sys.stderr)
        return 2
    if note:
        print(f'echoposed bag eval: {note}; offline estimation skipped', file=sys.stderr)
    spec = TargetSpec(view=args.target, bag_time_s=args.target_bag_time, volume=args.volume)
    results, failed = [], []
    for bag in args.bags:
        try:
            report, series = evaluate_bag(bag, estimator, spec, image_topic=args.image_topic,
                                          batch_size=args.batch, fusion=fusion)
            if note:
                report['offline'] = {'skipped': note}
            if args.plots is not None:
                from ..bag.plots import plot_bag
                report['plot'] = str(plot_bag(report, series, args.plots / f'{bag.name or "bag"}.png'))
        except EchoposedError as exc:  # BagError, and any other bad input in this bag (GeometryError, ...)
            failed.append(_failure(bag, str(exc)))
            continue
        except Exception as exc:  # the plot folder (OSError), memory, or a defect: this bag fails, not the batch
            failed.append(_failure(bag, f'cannot be scored ({type(exc).__name__}: {exc})'))
            continue
        report['series'] = {k: v for k, v in series.items() if k not in ('last_image', 'bag')}
        results.append(report)
        _print_report(report)
    out = {'scored': len(results), 'failed': failed, 'bags': results}
    try:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_finite(out), indent=1, default=_jsonable, allow_nan=False) + '\n')
    except OSError as exc:
        print(f'echoposed bag eval: {args.json}: cannot write the scores: {exc}', file=sys.stderr)
        return 2
    return 1 if failed else 0


def _failure(bag: Path, problem: str) -> dict[str, Any]:
    """The JSON entry of a bag that could not be scored, printed as one stderr line naming the bag once."""
    name = str(bag)
    problem = ' '.join(problem.split())  # one line
    for prefix in (f'{name}: ', f'{Path(name)}: '):
        problem = problem.removeprefix(prefix)
    message = f'{name}: {problem}'
    print(f'echoposed bag eval: {message}', file=sys.stderr)
    return {'bag': name, 'ok': False, 'error': message}


def _finite(x: Any) -> Any:
    """The same structure with NaN / inf floats replaced by None (strict JSON)."""
    if isinstance(x, float):
        return x if x == x and abs(x) != float('inf') else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _jsonable(x: Any) -> Any:
    import numpy as np
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f'not JSON serialisable: {type(x).__name__}')


def _fmt(x: Any, unit: str = '') -> str:
    return 'n/a' if x is None else f'{x:.2f}{unit}'


def _print_report(r: dict[str, Any]) -> None:
    print(f"{r['bag']}: {r['images']} images ({r['image_rate_hz']:.1f} Hz, {r['recording_s']:.1f} s), "
          f"scored in {r['eval_s']:.2f} s ({_fmt(r['realtime_factor'])}x real time)")
    off = r.get('offline', {})
    if 'error_deg' in off:
        print(f"  offline tracking error (aligned): median {_fmt(off['error_deg']['median'], ' deg')}, "
              f"p90 {_fmt(off['error_deg']['p90'], ' deg')}; sigma^2/error Spearman "
              f"{_fmt(off['sigma_error_spearman'])}")
    rec = r.get('recorded')
    if rec:
        print(f"  recorded poses: {rec['poses']}, latency median {_fmt(rec['latency_ms']['median'], ' ms')}")
    tgt = r.get('target')
    if tgt and 'final_error_deg' in tgt:
        print(f"  to {tgt['name']}: {tgt['initial_error_deg']:.2f} -> {tgt['final_error_deg']:.2f} deg "
              '(ground truth)')
