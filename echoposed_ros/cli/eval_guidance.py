"""``echoposed eval guidance``: offline closed-loop guidance protocols (docs/method.md section 7).

Datasets: phantom patients by seed (``--seeds A-B``, repeatable; ``--style FILE`` or a shipped
style name) and folders of volume files (``--volumes DIR``, repeatable); each flag is one dataset.
Estimator: the ONNX ensemble (``--model``, default the shipped ``models/echoposed_k5.onnx``) or
``--oracle`` (``gauge_fix(A g_true)`` with members, to check the harness). Controller parameters
come from ``config/controller.yaml`` (as the controller node reads them) unless ``--controller``
names another file. Writes ``--json PATH`` and, with ``--report DIR``, a Markdown report with
figures. See docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from ..errors import EchoposedError
from .errors import UsageError

__all__ = ['add_arguments', 'load_controller_config', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group('datasets (at least one; each flag is one dataset)')
    src.add_argument('--seeds', metavar='A-B', action='append', default=[],
                     help='phantom patient seeds: A-B (inclusive) or A,B,C (e.g. 1000-1019, the held-out patients)')
    src.add_argument('--volumes', metavar='DIR', action='append', default=[], help='folder of 3D / 3D+t volume files')
    src.add_argument('--style', metavar='FILE', default=None,
                     help='acquisition style YAML for phantoms, or a shipped style name (e.g. vendor_b)')
    src.add_argument('--frames', type=int, default=20,
                     help="phantom frames per cardiac cycle (default 20, as the sim node's phantom_frames)")
    src.add_argument('--cache', metavar='DIR', default=None,
                     help="phantom cache folder (default: the sim node's, $ECHOPOSED_CACHE or cache/phantoms)")
    est = parser.add_mutually_exclusive_group()
    est.add_argument('--model', metavar='ONNX', default=None,
                     help='ONNX ensemble (default: the shipped models/echoposed_k5.onnx)')
    est.add_argument('--oracle', action='store_true',
                     help='oracle estimator gauge_fix(A g_true) with noisy members (validates the harness)')
    parser.add_argument('--oracle-noise-deg', type=float, default=0.3, help='oracle member noise, RMS deg (0.3)')
    parser.add_argument('--oracle-noise-tilt-deg', type=float, default=0.0,
                        help="oracle noise grows as (1 + tilt / this) with the view's obliqueness (0 = off)")
    parser.add_argument('--json', required=True, metavar='PATH', help='where to write the figures (JSON)')
    parser.add_argument('--report', metavar='DIR', default=None, help='write guidance.md and figures into DIR')
    parser.add_argument('--controller', metavar='YAML', default=None,
                        help='controller parameters (default: config/controller.yaml, as the node)')
    parser.add_argument('--rate', type=float, default=10.0,
                        help='pose rate in Hz: images estimated and control steps per second (default 10)')
    parser.add_argument('--runs', type=int, default=5, help='intra-patient runs per volume (default 5)')
    parser.add_argument('--inter-runs', type=int, default=6, help='runs per (volume, view) pair (default 6; 0 = none)')
    parser.add_argument('--inter-threshold-deg', type=float, default=5.0,
                        help='a run is non-convergent when its final estimated error stays above this (default 5)')
    parser.add_argument('--inter-static', action='store_true', help='no cardiac motion in inter-patient runs')
    parser.add_argument('--max-seconds', type=float, default=45.0,
                        help='guidance time limit per run (default 45 s: what a sonographer would wait)')
    parser.add_argument('--robot', action='store_true', help='PyBullet arm instead of the kinematic world (slower)')
    parser.add_argument('--seed', type=int, default=0, help='seed of starts, targets and the oracle (default 0)')
    parser.add_argument('--threads', type=int, default=2, help='onnxruntime intra-op threads (default 2)')
    parser.add_argument('--mirror', action=argparse.BooleanOptionalAction, default=None,
                        help='test-time mirroring: each image also runs flipped (2K members); default: the '
                             "pose node's mirror_tta in config/pose.yaml")
    parser.add_argument('--fusion-window', type=float, default=None, metavar='S',
                        help="s, the pose node's cycle fusion (docs/estimator.md); 0 = every frame alone; default: "
                             "fusion_window in config/pose.yaml")
    parser.add_argument('--frame-size', type=int, default=0, metavar='N',
                        help='estimate from N x N 8-bit frames mapped onto the model by the estimator with the '
                             "pose node's fan settings (config/pose.yaml), as in the ROS loop (the simulator "
                             "publishes 128); default 0 = slices at the model's input size")
    parser.add_argument('--quiet', action='store_true', help='no progress bars')


def parse_seeds(text: str) -> list[int]:
    from .eval_calibration import parse_seeds as _parse
    return _parse(text)


def load_controller_config(path: str | Path | None = None) -> Any:
    """ControllerConfig from a controller parameter file (ROS 2 YAML ``node: ros__parameters: {...}``
    or a flat mapping); keys that are not ControllerConfig fields (node-only ones) are ignored."""
    import yaml

    from echoposed_ros.paths import config_dir
    from echoposed_ros.policy import ControllerConfig, PolicyError

    p = Path(path) if path else config_dir() / 'controller.yaml'
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f'controller parameters {p}: cannot read ({exc})') from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), dict):
        inner = next(iter(data.values()))
        data = inner.get('ros__parameters', inner)
    if not isinstance(data, dict):
        raise UsageError(f'controller parameters {p}: expected a mapping of parameters, got {type(data).__name__}')
    known = {f.name for f in fields(ControllerConfig)}
    values = {k: v for k, v in data.items() if k in known}
    try:
        return ControllerConfig(**values)
    except PolicyError as exc:
        raise UsageError(f'controller parameters {p}: {exc}') from None


def _style(style_file: str | None) -> Any:
    if style_file is None:
        return None
    from echoposed_sim import phantom
    shipped = phantom.style_path(style_file)
    return phantom.load_style(style_file if Path(style_file).is_file() or not shipped.is_file() else shipped)


def _datasets(args: argparse.Namespace) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """(name, volume loaders, source) per dataset flag; loaders read one volume when called."""
    from echoposed_ros.paths import cache_dir

    from .eval_calibration import _volume_files

    out = []
    if args.seeds:
        from echoposed_sim.phantom import PhantomCache
        style = _style(args.style)
        cache = PhantomCache(Path(args.cache) if args.cache else cache_dir() / 'phantoms', max_in_memory=1,
                             style=style, frames=args.frames)
        for text in args.seeds:
            seeds = parse_seeds(text)
            name = f'phantom {text}' + (f' ({args.style})' if args.style else '')
            out.append((name, [lambda s=s: cache.get(s) for s in seeds],
                        {'phantom_seeds': seeds, 'style': args.style, 'frames': args.frames}))
    for folder in args.volumes:
        from echoposed_sim.volume_io import load_volume
        files = _volume_files(folder)
        out.append((f'volumes {Path(folder).name}', [lambda f=f: load_volume(f) for f in files],
                    {'volume_files': [str(f) for f in files]}))
    return out


def _pose_mirror_default() -> bool:
    """mirror_tta of config/pose.yaml, as the pose node runs it."""
    from echoposed_ros.config.pose import pose_config_from_yaml
    return pose_config_from_yaml().mirror_tta


def _fusion(args: argparse.Namespace) -> tuple[float, float]:
    """(window s, max sigma^2 rad^2) of the pose node's cycle fusion: ``--fusion-window`` (else
    ``fusion_window`` of config/pose.yaml, as the pose node runs) and ``fusion_max_sigma2`` of that file. Off
    for the oracle unless asked: its random left factor turns the probe's axes (``A_p != I``), which no motion
    of the arm can carry (docs/estimator.md, "Cycle fusion")."""
    from echoposed_ros.config.pose import pose_config_from_yaml
    pose = pose_config_from_yaml()
    default = 0.0 if args.oracle else pose.fusion_window
    window = default if args.fusion_window is None else args.fusion_window
    if not (0 <= window < float('inf')):
        raise UsageError(f'--fusion-window {window}: expected a time >= 0 (s)')
    return float(window), pose.fusion_max_sigma2


def _estimator(args: argparse.Namespace) -> tuple[Any, Any, str | None]:
    """(PoseEstimator, slicing sector, model path or None)."""
    from echoposed_ros.eval.guidance import ModelEstimator, OracleEstimator
    from echoposed_sim.sector import SectorGeometry

    if args.oracle:
        return (OracleEstimator(seed=args.seed, noise_deg=args.oracle_noise_deg,
                                noise_tilt_deg=args.oracle_noise_tilt_deg), SectorGeometry(), None)
    from echoposed_ros.estimator import EstimatorError, require_default_model
    try:
        model = Path(args.model) if args.model else require_default_model()
    except EstimatorError as exc:
        raise EstimatorError(f'{exc}; or run with --oracle to check the harness alone') from None
    if not model.is_file():
        raise EstimatorError(f'--model {model}: no such file')
    if args.mirror is None:
        args.mirror = _pose_mirror_default()
    from echoposed_ros.eval.frames import frame_estimator
    est = ModelEstimator(frame_estimator(model, args.frame_size, args.threads, args.mirror), frame_size=args.frame_size)
    return est, est.sector, str(model)


def run(args: argparse.Namespace) -> int:
    from echoposed_ros.eval.guidance import GuidanceProtocol, evaluate_dataset, protocol_json

    t0 = time.perf_counter()
    try:
        if not args.seeds and not args.volumes:
            raise UsageError('no dataset: give --seeds A-B and / or --volumes DIR')
        protocol = GuidanceProtocol(runs=args.runs, inter_runs=args.inter_runs,
                                    inter_threshold_deg=args.inter_threshold_deg,
                                    inter_dynamic=not args.inter_static, max_seconds=args.max_seconds,
                                    seed=args.seed, robot=args.robot, rate_hz=args.rate)
        config = load_controller_config(args.controller)
        estimator, sector, model = _estimator(args)
        datasets = _datasets(args)
        fusion = _fusion(args)
        results = [evaluate_dataset(name, loaders, estimator, config, protocol, sector, source=source,
                                    progress=not args.quiet, fusion_window_s=fusion[0], fusion_max_sigma2=fusion[1])
                   for name, loaders, source in datasets]
    except EchoposedError as exc:
        print(f'echoposed eval guidance: {exc}', file=sys.stderr)
        return 2
    meta: dict[str, Any] = {
        'estimator': estimator.name, 'model': model, 'mirror_tta': bool(args.mirror),
        'fusion_window_s': fusion[0], 'fusion_max_sigma2': fusion[1], 'controller': asdict(config),
        'protocol': protocol_json(protocol), 'sector': asdict(sector),
        'created_utc': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
        'wall_s': time.perf_counter() - t0,
    }
    doc = {**meta, 'datasets': {ds.name: ds.as_json() for ds in results}}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + '\n')
    for ds in results:
        s = ds.summary
        st, dy, inter = s['intra_static'], s['intra_dynamic'], s['inter']
        rho = s['sigma_error_spearman']
        print(f'{ds.name}: final error mean static {st["mean_deg"]:.2f} deg, dynamic {dy["mean_deg"]:.2f} deg; '
              + (f'inter discarded {inter["discarded_share"]:.0%}, dispersion '
                 + (f'{inter["mean_dispersion_deg"]:.2f} deg' if inter['mean_dispersion_deg'] is not None else 'n/a')
                 if inter else 'inter not run')
              + f'; sigma^2/error Spearman {"n/a" if rho is None else f"{rho:.2f}"}')
    if args.report:
        from echoposed_ros.eval.report import write_report
        md = write_report(results, meta, args.report)
        print(f'wrote {md}')
    print(f'wrote {out}')
    return 0
