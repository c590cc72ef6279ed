"""``echoposed bench TARGET [--json PATH] [--check] [target options]``: run a speed benchmark.

Each target is a script in the source checkout's ``benchmarks/`` folder (benchmarks measure a
baseline in the same run and are not installed with the package). A benchmark script exposes

- ``add_arguments(parser)``: its own options (cheap: heavy imports belong inside ``run``),
- ``run(args) -> dict``: the figures, JSON-serialisable, with ``targets_met`` (bool) when the
  benchmark has targets,
- ``summary(result) -> str``: one line for the terminal.

To add a target (e.g. ``estimator``), write ``benchmarks/bench_<name>.py`` and add one line to
:data:`TARGETS`.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

__all__ = ['TARGETS', 'add_arguments', 'load_target', 'run']

# name: (script in benchmarks/, one-line help). Sorted by name.
TARGETS: dict[str, tuple[str, str]] = {
    'bag-eval': ('bench_bag_eval.py', 'offline scoring of a 30 Hz recording: speed against real time'),
    'estimator': ('bench_estimator.py', 'K-member ensemble on one 128x128 image: onnxruntime vs PyTorch eager'),
    'phantom': ('bench_phantom.py', 'CPU s per phantom patient: fused numba kernels vs array baselines'),
    'slicer': ('bench_slicer.py', 'batched 128x128 slices/s of the numba slicer vs scipy map_coordinates'),
    'train-step': ('bench_train_step.py',
                   'one training update: fp32 vs channels-last vs bf16 autocast, 1 and 2 threads'),
    'world': ('bench_world.py', 'one 30 Hz control cycle of the arm world vs the kinematic world; arm tracking'),
}


def benchmarks_dir() -> Path:
    from echoposed_ros.paths import repo_root
    root = repo_root()
    if root is None or not (root / 'benchmarks').is_dir():
        raise FileNotFoundError('echoposed bench needs the source checkout: the benchmarks/ folder is not '
                                'installed with the package')
    return root / 'benchmarks'


def load_target(name: str) -> ModuleType:
    """Import the benchmark script of target ``name`` from ``benchmarks/``."""
    script, _ = TARGETS[name]
    path = benchmarks_dir() / script
    if not path.is_file():
        raise FileNotFoundError(f'benchmark target {name!r}: script {path} is missing')
    spec = importlib.util.spec_from_file_location(f'echoposed_benchmarks.{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest='target', metavar='TARGET', required=True)
    for name, (_, help_text) in sorted(TARGETS.items()):
        target_parser = sub.add_parser(name, help=help_text, description=help_text)
        target_parser.add_argument('--json', metavar='PATH', type=Path, help='write the figures as JSON here')
        target_parser.add_argument('--check', action='store_true',
                                   help='exit with status 1 when the benchmark misses its targets')
        try:
            load_target(name).add_arguments(target_parser)
        except FileNotFoundError:
            pass  # reported by run() when this target is chosen


def run(args: argparse.Namespace) -> int:
    try:
        module = load_target(args.target)
    except FileNotFoundError as err:
        print(f'echoposed bench: {err}', file=sys.stderr)
        return 2
    result = module.run(args)
    print(module.summary(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + '\n')
        print(f'wrote {args.json}')
    if args.check and not result.get('targets_met', True):
        return 1
    return 0
