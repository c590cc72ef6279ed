"""``echoposed estimate PATH... --json OUT | --csv OUT``: pose estimates for image files, as the pose node makes them.

Each PATH is an image file (PNG, JPEG, NPY) or a folder (its image files, sorted by name, not
recursive). The estimator is set up from the pose node's parameter file (``config/pose.yaml``,
or ``--pose-config``): the same model, fan mode, detection threshold, input depth and test-time
mirroring, each overridable by a flag; ``--fan-geometry`` gives the input fan explicitly. sigma^2
is compared with the controller's ``uncertainty_threshold`` (``config/controller.yaml``, or
``--controller-config`` / ``--uncertainty-threshold``): a frame above it is one the loop would
hold on. Besides the mean pose (orbit and probe quaternions x, y, z, w; canonical gauge, the
model's frame) each image gets its probe turns about the probe's own x, y, z axes (degrees):
the twist angles of ``P_ref^T P``, the probe factor relative to the reference image's (``--reference
IMAGE``, else the first image), as ``echoposed eval calibration`` reads turns. ``--json`` writes
everything, ``--csv`` one row per image.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError

__all__ = ['add_arguments', 'collect_images', 'estimator_settings', 'probe_turns_deg', 'run']

_CSV_COLUMNS = ('path', 'sigma2_rad2', 'uncertain', 'turn_x_deg', 'turn_y_deg', 'turn_z_deg',
                'orbit_x', 'orbit_y', 'orbit_z', 'orbit_w', 'probe_x', 'probe_y', 'probe_z', 'probe_w')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('paths', nargs='+', metavar='PATH', help='image files (.png .jpg .jpeg .npy) or folders')
    out = parser.add_argument_group('outputs (at least one)')
    out.add_argument('--json', metavar='OUT', default=None, help='write the settings and every estimate (JSON)')
    out.add_argument('--csv', metavar='OUT', default=None,
                     help='write one row per image: sigma^2, uncertain, probe turns about x, y, z (deg), '
                          'orbit and probe quaternions (x, y, z, w)')
    out.add_argument('--reference', metavar='IMAGE', default=None,
                     help='image whose probe factor the turns are measured from (default: the first image)')
    node = parser.add_argument_group("estimator (defaults: the pose node's parameters)")
    node.add_argument('--pose-config', metavar='YAML', default=None,
                      help="the pose node's parameter file (default: config/pose.yaml)")
    node.add_argument('--model', metavar='ONNX', default=None,
                      help="ONNX ensemble (default: the pose node's model_path, else the shipped "
                           "models/echoposed_k5.onnx)")
    node.add_argument('--fan', choices=('auto', 'detect', 'model'), default=None,
                      help="input fan: 'auto' = the model's fan for model-sized images, else detected once "
                           "per image size; 'detect' = detect in every image; 'model' = assume the model's fan")
    node.add_argument('--fan-geometry', metavar='ROW,COL,ANGLE_DEG,DEPTH_ROWS[,DEPTH_COLS]', default=None,
                      help='the input fan given explicitly, in pixels of the input images (apex row and column, '
                           'full opening angle in degrees, fan radius in rows and in columns, equal when omitted); '
                           'replaces --fan; write --fan-geometry=ROW,... when ROW is negative')
    node.add_argument('--detect-threshold', type=float, default=None,
                      help='intensity in [0, 1] above which a pixel counts as inside the fan (detection)')
    node.add_argument('--input-depth-mm', type=float, default=None,
                      help='physical fan depth of the inputs (mm): keep mm instead of scaling depth to the '
                           "model's; 0 = scale")
    node.add_argument('--mirror', action=argparse.BooleanOptionalAction, default=None,
                      help='test-time mirroring: each image also runs left-right flipped (2K members)')
    node.add_argument('--threads', type=int, default=None, help='onnxruntime intra-op threads')
    ctl = parser.add_argument_group("uncertainty (default: the controller's uncertainty_threshold)")
    ctl.add_argument('--controller-config', metavar='YAML', default=None,
                     help="the controller's parameter file (default: config/controller.yaml)")
    ctl.add_argument('--uncertainty-threshold', type=float, default=None,
                     help='sigma^2 (rad^2) above which a frame is flagged uncertain')


def collect_images(paths: list[str]) -> list[Path]:
    """Expand files and folders into a list of image files (EstimatorError for a bad path)."""
    from echoposed_ros.estimator import IMAGE_SUFFIXES, EstimatorError

    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise EstimatorError(f'folder {p}: holds no image files ({", ".join(IMAGE_SUFFIXES)})')
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise EstimatorError(f'image path {p}: no such file or folder')
    return files


def probe_turns_deg(reference_probe: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """(N, 3) turns about the probe's own x, y, z axes (degrees, in [-180, 180)) of probe factors
    ``probes`` (N, 3, 3) relative to ``reference_probe`` (3, 3): the swing-twist angles of
    ``P_ref^T P`` about each axis (for a pure turn about one axis, that turn)."""
    from ..eval.calibration import twist_angle

    relative = np.einsum('ba,nbc->nac', np.asarray(reference_probe, dtype=np.float64),
                         np.asarray(probes, dtype=np.float64).reshape(-1, 3, 3))
    return np.degrees(np.stack([twist_angle(relative, axis) for axis in 'xyz'], axis=1))


def _fan_geometry(text: str) -> Any:
    from echoposed_ros.estimator import EstimatorError, FanGeometry

    try:
        values = [float(v) for v in text.split(',')]
    except ValueError:
        values = []
    if len(values) not in (4, 5) or not all(math.isfinite(v) for v in values):
        raise UsageError(f'--fan-geometry {text!r}; expected ROW,COL,ANGLE_DEG,DEPTH_ROWS[,DEPTH_COLS] '
                         '(numbers, pixels and degrees), e.g. --fan-geometry=-4,119.5,75,190')
    row, col, angle_deg, depth_rows = values[:4]
    try:
        return FanGeometry(row, col, math.radians(angle_deg), depth_rows, values[4] if len(values) == 5 else depth_rows)
    except EstimatorError as exc:
        raise UsageError(f'--fan-geometry {text!r}: {exc}') from None


def estimator_settings(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Path]:
    """The pose node's config from ``--pose-config`` (default ``config/pose.yaml``) with the flags
    applied, checked as the node checks its parameters; the Estimator keywords it gives (``fan``
    replaced by a FanGeometry when ``--fan-geometry`` is given); the parameter file read."""
    from ..config.params import configured_values
    from ..config.pose import NODE_NAME, PARAMS, PoseNodeConfig
    from ..paths import config_dir

    path = Path(args.pose_config) if args.pose_config else config_dir() / 'pose.yaml'
    if args.pose_config and not path.is_file():
        raise UsageError(f'--pose-config {path}: no such file')
    values = configured_values(PARAMS, path, NODE_NAME)
    overrides = {'model_path': args.model, 'fan': args.fan, 'detect_threshold': args.detect_threshold,
                 'input_depth_mm': args.input_depth_mm, 'mirror_tta': args.mirror, 'intra_op_threads': args.threads}
    for key, value in overrides.items():
        if value is not None:
            values[key] = type(values[key])(value)
    config = PoseNodeConfig.from_parameters(values)   # checked as the node checks its parameters
    kwargs = config.estimator_kwargs()
    if args.fan_geometry is not None:
        kwargs['fan'] = _fan_geometry(args.fan_geometry)
    return config, kwargs, path


def _uncertainty_threshold(args: argparse.Namespace) -> tuple[float, str]:
    """(threshold rad^2, where it came from)."""
    if args.uncertainty_threshold is not None:
        if not (math.isfinite(args.uncertainty_threshold) and args.uncertainty_threshold > 0):
            raise UsageError(f'--uncertainty-threshold {args.uncertainty_threshold}; expected sigma^2 > 0 rad^2')
        return float(args.uncertainty_threshold), '--uncertainty-threshold'
    from ..paths import config_dir
    from .eval_guidance import load_controller_config

    path = Path(args.controller_config) if args.controller_config else config_dir() / 'controller.yaml'
    return float(load_controller_config(path).uncertainty_threshold), str(path)


def _model_path(config: Any, args: argparse.Namespace) -> Path:
    from echoposed_ros.estimator import default_model_path, require_default_model

    if args.model is None and config.model_path == default_model_path():
        return require_default_model()   # says how to get the shipped model when it is missing
    return config.model_path


def _fan_record(fan: Any) -> dict[str, float]:
    return {'apex_row': fan.apex_row, 'apex_col': fan.apex_col, 'angle_rad': fan.angle_rad,
            'depth_rows': fan.depth_rows, 'depth_cols': fan.depth_cols}


def run(args: argparse.Namespace) -> int:
    from echoposed_ros.estimator import Estimator, EstimatorError, read_image_file

    if args.json is None and args.csv is None:
        raise UsageError('no output: give --json OUT, --csv OUT or both')
    try:
        config, kwargs, pose_config = estimator_settings(args)
        threshold, threshold_from = _uncertainty_threshold(args)
        model = _model_path(config, args)
        files = collect_images(args.paths)
        if args.reference and Path(args.reference).is_dir():
            raise UsageError(f'--reference {args.reference}: expected one image file, not a folder')
        reference = collect_images([args.reference])[0] if args.reference else files[0]
        est = Estimator(model, **kwargs)

        def estimate(f: Path) -> tuple[Any, Any, str]:
            data, encoding = read_image_file(f)
            return est.estimate(data, encoding=encoding, name=f'image file {f}'), data, encoding

        estimates = [(f, *estimate(f)) for f in files]
        known = [e for f, e, _, _ in estimates if f == reference]
        ref_estimate = known[0] if known else estimate(reference)[0]
    except EstimatorError as exc:
        print(f'echoposed estimate: {exc}', file=sys.stderr)
        return 2
    turns = probe_turns_deg(ref_estimate.probe, np.stack([e.probe for _, e, _, _ in estimates]))
    results = []
    for (f, e, data, encoding), turn in zip(estimates, turns, strict=True):
        uncertain = not e.sigma2 <= threshold
        results.append({
            'path': str(f), 'encoding': encoding, 'size': [int(data.shape[0]), int(data.shape[1])],
            'orbit_xyzw': [float(v) for v in e.orbit_xyzw], 'probe_xyzw': [float(v) for v in e.probe_xyzw],
            'sigma2': e.sigma2, 'uncertain': uncertain,
            'probe_turn_deg': {axis: float(v) for axis, v in zip('xyz', turn, strict=True)},
            'fan': _fan_record(e.fan), 'inference_ms': 1e3 * e.inference_s,
        })
        print(f'{f}: sigma2 {e.sigma2:.4g} rad^2{" (uncertain)" if uncertain else ""}, probe turn '
              f'x {turn[0]:+.1f} y {turn[1]:+.1f} z {turn[2]:+.1f} deg')
    n_uncertain = sum(r['uncertain'] for r in results)
    print(f'{n_uncertain} of {len(results)} frame(s) above the uncertainty_threshold {threshold:g} rad^2 '
          f'({threshold_from}): the controller would hold the probe on them')
    info = est.model.info
    fan = kwargs['fan']
    out = {
        'model': str(model), 'model_name': info.model_name, 'members': info.members,
        'members_per_estimate': est.members,
        'settings': {'pose_config': str(pose_config),
                     'fan': fan if isinstance(fan, str) else _fan_record(fan),
                     'detect_threshold': config.detect_threshold, 'input_depth_mm': config.input_depth_mm,
                     'mirror_tta': config.mirror_tta, 'intra_op_threads': config.intra_op_threads},
        'uncertainty_threshold': threshold, 'uncertainty_threshold_from': threshold_from,
        'uncertain_frames': n_uncertain,
        'reference': {'path': str(reference), 'probe_xyzw': [float(v) for v in ref_estimate.probe_xyzw]},
        'quaternion_order': 'x, y, z, w', 'sigma2_unit': 'rad^2',
        'turns': "probe_turn_deg: twist angles (deg) about the probe's x, y, z of P_ref^T P",
        'images': results,
    }
    try:
        if args.json is not None:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(out, indent=2) + '\n')
        if args.csv is not None:
            Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
            with open(args.csv, 'w', newline='') as fh:
                writer = csv.writer(fh)
                writer.writerow(_CSV_COLUMNS)
                for r in results:
                    t = r['probe_turn_deg']
                    writer.writerow([r['path'], f'{r["sigma2"]:.6g}', int(r['uncertain']),
                                     *(f'{t[a]:.3f}' for a in 'xyz'),
                                     *(f'{v:.8f}' for v in r['orbit_xyzw'] + r['probe_xyzw'])])
    except OSError as exc:
        raise UsageError(f'cannot write the estimates: {exc}') from None
    print(f'wrote {len(results)} estimate(s) to ' + ' and '.join(str(p) for p in (args.json, args.csv) if p))
    return 0
