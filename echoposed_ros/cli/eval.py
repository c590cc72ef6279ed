"""``echoposed eval TARGET ...``: the evaluation protocols of docs/method.md section 7.

Each target lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``
(the same convention as the subcommands); add a protocol by adding one line to :data:`TARGETS`.
"""
from __future__ import annotations

import argparse
import importlib

__all__ = ['TARGETS', 'add_arguments', 'run']

# name: (module, one-line help). Sorted by name.
TARGETS: dict[str, tuple[str, str]] = {
    'calibration': ('echoposed_ros.cli.eval_calibration',
                    'Angular calibration: normalised MAAE about probe x / y / z, sigma^2 vs error.'),
    'compare': ('echoposed_ros.cli.eval_compare',
                'Two guidance evaluations of the same seeds, run by run: the runs a change rescued and lost, '
                'and whether it is a gain.'),
    'guidance': ('echoposed_ros.cli.eval_guidance',
                 'Closed-loop guidance: intra-patient static / dynamic, inter-patient, sigma^2 vs error.'),
    'phase': ('echoposed_ros.cli.eval_phase',
              'Phase invariance: spread of the estimate over a cardiac cycle vs distance between poses.'),
    'threshold': ('echoposed_ros.cli.eval_threshold',
                  "sigma^2 of in-range slices vs no-heart frames: the controller's uncertainty_threshold."),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest='target', metavar='TARGET', required=True)
    for name, (module_name, help_text) in sorted(TARGETS.items()):
        target = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module_name).add_arguments(target)


def run(args: argparse.Namespace) -> int:
    module_name, _ = TARGETS[args.target]
    return int(importlib.import_module(module_name).run(args) or 0)
