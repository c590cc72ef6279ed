"""``echoposed eval calibration``: docs/method.md section 7 angular calibration of an ONNX ensemble.

Volumes: phantom patients by seed (``--seeds A-B``, optionally ``--style FILE``) or volume files
(``--volumes DIR``). Slices use the model's own sector geometry (from its metadata), so they go
to the network unchanged; with ``--frame-size N`` they are cut N x N with square pixels, 8-bit, and
mapped onto the model's input by the estimator as the pose node maps a scanner's or the
simulator's frames (fan detected). Writes the figures as JSON (``--json PATH``) and, with ``--plots DIR``,
``DIR/calibration.png`` (predicted against applied turn per axis, error against sigma^2).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import EchoposedError
from .errors import UsageError

__all__ = ['add_arguments', 'parse_seeds', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--seeds', metavar='A-B', help='phantom patient seeds: A-B (inclusive), or A,B,C')
    src.add_argument('--volumes', metavar='DIR', help='folder of 3D / 3D+t volume files')
    parser.add_argument('--style', metavar='FILE', default=None,
                        help='acquisition style YAML for phantoms, or a shipped style name (e.g. vendor_b)')
    parser.add_argument('--cache', metavar='DIR', default=None,
                        help="phantom cache folder (default: the project's cache/phantoms; '' = no cache)")
    parser.add_argument('--json', required=True, metavar='PATH', help='where to write the figures (JSON)')
    parser.add_argument('--model', metavar='ONNX', default=None,
                        help='ONNX ensemble (default: the shipped models/echoposed_k5.onnx)')
    parser.add_argument('--plots', metavar='DIR', default=None, help='write calibration.png into DIR')
    parser.add_argument('--threads', type=int, default=2, help='onnxruntime intra-op threads (default 2)')
    parser.add_argument('--mirror', action='store_true',
                        help='test-time mirroring (2K members; docs/method.md section 7 calibrates without it)')
    parser.add_argument('--frame-size', type=int, default=0, metavar='N',
                        help='cut N x N frames of the same fan, 8-bit, and let the estimator map them onto the '
                             "model's input as the pose node does (config/pose.yaml fan settings); default 0 = "
                             "slices at the model's own input size, fed unchanged")
    parser.add_argument('--z-step-deg', type=float, default=1.0, help='step of the turn about z (default 1)')
    parser.add_argument('--tilt-range-deg', type=float, default=30.0, help='x / y turns span +-this (default 30)')
    parser.add_argument('--tilt-step-deg', type=float, default=1.0, help='step of the x / y turns (default 1)')


def parse_seeds(text: str) -> list[int]:
    """``'A-B'`` (inclusive) or ``'A,B,C'`` or ``'A'`` (non-negative) -> list of seeds; ValueError naming the text."""
    seeds: list[int] = []
    for part in text.split(','):
        m = re.fullmatch(r'\s*(\d+)\s*(?:-\s*(\d+)\s*)?', part)
        if m is None or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise UsageError(f'--seeds {text!r}: expected A-B (inclusive, A <= B), A,B,C or A (non-negative integers)')
        lo = int(m.group(1))
        seeds += list(range(lo, int(m.group(2) or lo) + 1))
    return seeds


def _phantoms(seeds: list[int], style_file: str | None, cache: str | None) -> Iterator[Any]:
    """Phantom patients one at a time through the shared on-disk cache (``PhantomCache``, one
    volume in memory); the style is read up front so a bad one fails before any work."""
    from echoposed_ros.paths import cache_dir
    from echoposed_sim import phantom

    style = None
    if style_file is not None:
        shipped = phantom.style_path(style_file)
        # a file path, or the name of a shipped style (e.g. vendor_b)
        style = phantom.load_style(style_file if Path(style_file).is_file() or not shipped.is_file() else shipped)
    if cache == '':
        def generate() -> Iterator[Any]:
            for seed in seeds:
                yield phantom.make_phantom(seed, style)
        return generate()
    store = phantom.PhantomCache(Path(cache) if cache else cache_dir() / 'phantoms', max_in_memory=1, style=style)
    return (store.get(seed) for seed in seeds)


def _volume_files(folder: str) -> list[Path]:
    d = Path(folder)
    if not d.is_dir():
        raise UsageError(f'--volumes {folder}: no such folder')
    from echoposed_sim.volume_io import SUFFIXES, volume_files

    files = volume_files(d)
    if not files:
        raise UsageError(f'--volumes {folder}: holds no volume files ({", ".join(SUFFIXES)})')
    return files


def _loaded(files: list[Path]) -> Iterator[Any]:
    from echoposed_sim.volume_io import load_volume
    for f in files:
        yield load_volume(f)


def _band(b: dict[str, Any]) -> str:
    """One band of ``maae_by_turn_deg`` for the console: ``10-20: 2.2`` or, for a tilt band with
    sign flips, ``20-30: 14.2 (14 % sign flips)``."""
    text = f'{b["lo_deg"]:g}-{b["hi_deg"]:g}: ' + (f'{b["maae_deg"]:.1f}' if b['maae_deg'] is not None else 'n/a')
    if b.get('sign_flip_share'):
        text += f' ({100 * b["sign_flip_share"]:.0f} % sign flips)'
    return text


def run(args: argparse.Namespace) -> int:
    from echoposed_ros.estimator import require_default_model
    from echoposed_ros.eval.calibration import CalibrationProtocol, calibrate_volumes, plot_calibration
    from echoposed_ros.eval.frames import frame_estimator, frame_predictor

    t0 = time.perf_counter()
    try:
        protocol = CalibrationProtocol(z_step_deg=args.z_step_deg, tilt_range_deg=args.tilt_range_deg,
                                       tilt_step_deg=args.tilt_step_deg)
        model = Path(args.model) if args.model else require_default_model()
        est = frame_estimator(model, args.frame_size, args.threads, args.mirror)
        if args.seeds is not None:
            seeds = parse_seeds(args.seeds)
            volumes = _phantoms(seeds, args.style, args.cache)
            source: dict[str, Any] = {'phantom_seeds': seeds, 'style': args.style}
        else:
            files = _volume_files(args.volumes)
            volumes = _loaded(files)
            source = {'volume_files': [str(f) for f in files]}
        sector, predict = frame_predictor(est, args.frame_size)
        results, summary = calibrate_volumes(volumes, predict, sector, protocol, progress=True)
    except EchoposedError as exc:
        print(f'echoposed eval calibration: {exc}', file=sys.stderr)
        return 2
    summary = {'model': str(model), 'model_name': est.model.info.model_name, 'mirror_tta': args.mirror,
               'frame_size': args.frame_size or None,
               'source': source, **summary,
               'wall_s': time.perf_counter() - t0}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + '\n')
    if args.plots:
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        plot_calibration(results, summary, str(Path(args.plots) / 'calibration.png'))
    axes = summary['axes']
    print('normalised MAAE x / y / z: ' + ' / '.join(
        f'{axes[a]["normalized_maae"]:.3f}' if axes[a]['normalized_maae'] is not None else 'n/a' for a in 'xyz')
        + '   MAAE (deg): ' + ' / '.join(f'{axes[a]["maae_deg"]:.1f}' for a in 'xyz')
        + f'   mean sigma^2 {summary["mean_sigma2"]:.4g} rad^2')
    for a in 'xyz':
        print(f'MAAE about {a} by |applied turn| (deg): ' + ', '.join(
            _band(b) for b in axes[a]['maae_by_turn_deg']))
    print(f'wrote {out}')
    return 0
