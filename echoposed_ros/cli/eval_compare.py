"""``echoposed eval compare BEFORE.json AFTER.json``: two guidance evaluations of the same protocol and seeds,
run by run (docs/evaluation.md, "Is a change a gain?"): the share within the tolerance before and after, the
runs the change rescued and lost, the sign test on them and 95 % intervals from a cluster bootstrap over
volumes. Either file may be gzip-compressed (``.json.gz``, as kept in ``docs/experiments/results``). Exit
status 0 when compared, 2 for unreadable or unpaired files."""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from ..errors import EchoposedError

__all__ = ['add_arguments', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('before', metavar='BEFORE.json',
                        help='`echoposed eval guidance --json` of the baseline (plain or gzipped)')
    parser.add_argument('after', metavar='AFTER.json', help='the same protocol and seeds with the change')
    parser.add_argument('--tolerance', type=float, default=5.0, metavar='DEG',
                        help="a run succeeds within this final error (deg; default 5, the targets' tolerance)")
    parser.add_argument('--json', metavar='PATH', default=None, help='also write the comparison as JSON')


def _load(path: str) -> dict:
    from echoposed_ros.eval.guidance import GuidanceError
    try:
        data = Path(path).read_bytes()
        return json.loads(gzip.decompress(data) if data[:2] == b'\x1f\x8b' else data)
    except FileNotFoundError:
        raise GuidanceError(f'{path}: no such file') from None
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GuidanceError(f'{path}: not a readable JSON file ({exc}); expected `echoposed eval guidance --json`') \
            from None


def run(args: argparse.Namespace) -> int:
    from echoposed_ros.eval.guidance.compare import compare_evaluations, comparison_json, comparison_text
    names = (args.before, args.after)
    try:
        result = compare_evaluations(_load(args.before), _load(args.after), tolerance_deg=args.tolerance, names=names)
    except EchoposedError as exc:
        print(f'echoposed eval compare: {exc}', file=sys.stderr)
        return 2
    sys.stdout.write(comparison_text(result, names))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(comparison_json(result, names), indent=2) + '\n')
        print(f'wrote {args.json}')
    return 0
