"""``echoposed estimate PATH... --json OUT``: pose estimates for image files.

Each PATH is an image file (PNG, JPEG, NPY) or a folder (its image files, sorted by name, not
recursive). Writes one JSON file: the model, and per image its path, the ensemble mean pose as
orbit and probe quaternions (x, y, z, w; canonical gauge, the model's frame), sigma^2 (rad^2),
the input fan used and the inference time.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ['add_arguments', 'collect_images', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('paths', nargs='+', metavar='PATH', help='image files (.png .jpg .jpeg .npy) or folders')
    parser.add_argument('--json', required=True, metavar='OUT', help='where to write the estimates (JSON)')
    parser.add_argument('--model', metavar='ONNX', default=None,
                        help='ONNX ensemble (default: the shipped models/echoposed_k5.onnx)')
    parser.add_argument('--fan', choices=('auto', 'detect', 'model'), default='auto',
                        help="input fan: 'auto' = the model's fan for model-sized images, else detected once "
                             "per image size; 'detect' = detect in every image; 'model' = assume the model's fan")
    parser.add_argument('--threshold', type=float, default=0.0,
                        help='intensity in [0, 1] above which a pixel counts as inside the fan (detection)')
    parser.add_argument('--input-depth-mm', type=float, default=None,
                        help='physical fan depth of the inputs (mm): keep mm instead of scaling depth to the model')
    parser.add_argument('--threads', type=int, default=2, help='onnxruntime intra-op threads (default 2)')


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


def run(args: argparse.Namespace) -> int:
    from echoposed_ros.estimator import Estimator, EstimatorError, read_image_file, require_default_model

    try:
        model = Path(args.model) if args.model else require_default_model()
        files = collect_images(args.paths)
        est = Estimator(model, intra_op_threads=args.threads, fan=args.fan, input_depth_mm=args.input_depth_mm,
                        detect_threshold=args.threshold)
        results = []
        for f in files:
            data, encoding = read_image_file(f)
            e = est.estimate(data, encoding=encoding, name=f'image file {f}')
            fan = e.fan
            results.append({
                'path': str(f),
                'encoding': encoding,
                'size': [int(data.shape[0]), int(data.shape[1])],
                'orbit_xyzw': [float(v) for v in e.orbit_xyzw],
                'probe_xyzw': [float(v) for v in e.probe_xyzw],
                'sigma2': e.sigma2,
                'fan': {'apex_row': fan.apex_row, 'apex_col': fan.apex_col, 'angle_rad': fan.angle_rad,
                        'depth_rows': fan.depth_rows, 'depth_cols': fan.depth_cols},
                'inference_ms': 1e3 * e.inference_s,
            })
            print(f'{f}: sigma2 {e.sigma2:.4g} rad^2')
    except EstimatorError as exc:
        print(f'echoposed estimate: {exc}', file=sys.stderr)
        return 2
    info = est.model.info
    out = {
        'model': str(model),
        'model_name': info.model_name,
        'members': info.members,
        'quaternion_order': 'x, y, z, w',
        'sigma2_unit': 'rad^2',
        'images': results,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + '\n')
    print(f'wrote {len(results)} estimate(s) to {args.json}')
    return 0
