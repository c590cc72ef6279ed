"""The ``echoposed`` command: one tool, one subcommand per job.

Each subcommand lives in its own module of this package and exposes
``add_arguments(parser)`` and ``run(args) -> int``. An :class:`~echoposed_ros.errors.EchoposedError`
escaping ``run`` prints ``echoposed <command>: <message>`` and exits 2; any other exception is a
bug and shows its traceback. Modules are imported only when their
subcommand runs, so ``echoposed --help`` stays fast and never imports torch or rclpy.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import EchoposedError

__all__ = ['SUBCOMMANDS', 'main']

# name: (module, one-line help). Sorted by name.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    'adapt': ('echoposed_ros.cli.adapt', "Adapt the estimator to one patient from a sweep of the robot's own motion."),
    'bag': ('echoposed_ros.cli.bag', 'Rosbag2 (MCAP) record, replay and offline scoring of sessions.'),
    'bench': ('echoposed_ros.cli.bench', 'Speed benchmarks against a same-run baseline (slicer, estimator, ...).'),
    'estimate': ('echoposed_ros.cli.estimate', 'Poses, sigma^2 and probe turns of image files, as the pose node.'),
    'eval': ('echoposed_ros.cli.eval', 'Evaluation protocols (docs/method.md section 7): calibration, guidance.'),
    'export': ('echoposed_ros.cli.export', 'Write a training checkpoint as the one-file ONNX ensemble.'),
    'launch': ('echoposed_ros.cli.launch', 'Run sim_guidance or guidance without ros2 launch, with a summary.'),
    'phantom': ('echoposed_ros.cli.phantom', 'Write one procedural beating-heart phantom patient (3D+t volume).'),
    'train': ('echoposed_ros.cli.train', 'Train the K-member ensemble (phantom seeds or your own volumes).'),
    'volume': ('echoposed_ros.cli.volume', 'Check a volume file: what it holds and assumes, its geometry drawn.'),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='echoposed',
        description='Cardiac ultrasound probe guidance on SO(3) x SO(3) from 2D images.')
    from echoposed_ros import __version__
    parser.add_argument('--version', action='version', version=f'echoposed {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name, (_, help_text) in sorted(SUBCOMMANDS.items()):
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)  # --help, --version, or an error naming the unknown command
        parser.print_help()
        return 2
    name = argv[0]
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    sub_parser = argparse.ArgumentParser(prog=f'echoposed {name}', description=help_text)
    module.add_arguments(sub_parser)
    try:  # positionals may follow options (echoposed launch sim_guidance --duration 9 seed:=3)
        args = sub_parser.parse_intermixed_args(argv[1:])
    except TypeError:  # subcommands with their own sub-parsers
        args = sub_parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except EchoposedError as exc:  # bad input: one line; anything else is a bug and keeps its traceback
        print(f'echoposed {name}: {exc}', file=sys.stderr)
        return 2

if __name__ == '__main__':
    sys.exit(main())
