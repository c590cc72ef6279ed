"""``echoposed export``: write a training checkpoint as the one-file ONNX ensemble the estimator
loads (all members and adapters; metadata with input geometry, K, config and data)."""
from __future__ import annotations

import argparse

__all__ = ['add_arguments', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('checkpoint', help='training checkpoint (e.g. out/train/last.pt)')
    parser.add_argument('--out', default='models/echoposed_k5.onnx', help='ONNX file to write')
    parser.add_argument('--name', default='', help='model_name metadata (default: the file stem)')
    parser.add_argument('--pin-batches', type=int, default=16,
                        help='training batches used to pin the output frame to the volume frame '
                             '(0: keep the training frame; docs/training.md)')


def run(args: argparse.Namespace) -> int:
    from echoposed_ros.training import TrainingError
    from echoposed_ros.training.export import export_onnx
    try:
        path = export_onnx(args.checkpoint, args.out, args.name, args.pin_batches)
    except TrainingError as e:
        print(f'echoposed export: {e}')
        return 2
    print(f'wrote {path} ({path.stat().st_size / 1e6:.2f} MB)')
    return 0
