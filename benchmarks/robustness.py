"""How a model holds up away from its training data: held-out acquisition styles and wider cardiac motion.

For each model (the shipped one first): ``echoposed eval calibration`` on held-out phantom patients in
the default style and in each held-out style (normalised MAAE about x, y, z, mean sigma^2; ratios to
the default style), and ``echoposed eval phase --motion wide`` (spread of the estimate over a cardiac
cycle against the distance between poses 10-20 deg apart, on hearts whose motion is drawn wider than
the phantom's own). 2 deg calibration steps.

    .venv/bin/python benchmarks/robustness.py --models models/echoposed_k5.onnx out/run13/model.onnx \\
        --seeds 1000-1009 --json docs/eval/robustness/robustness.json --markdown docs/eval/robustness/robustness.md
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ECHOPOSED = Path(sys.executable).with_name('echoposed')


def _json(cmd: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / 'r.json'
        proc = subprocess.run([*cmd, '--json', str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f'{" ".join(cmd)}\nexited {proc.returncode}: {proc.stderr[-2000:]}')
        return json.loads(out.read_text())


def measure(model: str, seeds: str, styles: list[str]) -> dict:
    res: dict = {'model': model, 'styles': {}}
    for style in ['default', *styles]:
        cmd = [str(ECHOPOSED), 'eval', 'calibration', '--seeds', seeds, '--model', model, '--z-step-deg', '2',
               '--tilt-step-deg', '2']
        if style != 'default':
            cmd += ['--style', style]
        d = _json(cmd)
        res['styles'][style] = {'nmaae': {a: v['normalized_maae'] for a, v in d['axes'].items()},
                                'mean_sigma2': d['mean_sigma2']}
    base = res['styles']['default']
    for style in styles:
        s = res['styles'][style]
        s['z_ratio'] = s['nmaae']['z'] / base['nmaae']['z']
        s['sigma2_ratio'] = s['mean_sigma2'] / base['mean_sigma2']
    phase = _json([str(ECHOPOSED), 'eval', 'phase', '--seeds', seeds, '--model', model, '--motion', 'wide'])
    res['phase_wide'] = {k: phase[k] for k in ('ratio', 'median_spread_deg', 'median_estimated_distance_deg')}
    return res


def markdown(r: dict) -> str:
    styles = r['held_out_styles']
    head = ('| model | default x / y / z | ' + ' | '.join(f'{s}: z (x default), sigma^2 (x default)' for s in styles)
            + ' | phase, wide motion: spread / distance (deg) = ratio |')
    lines = [f"Held-out phantoms {r['seeds']}; calibration with 2 deg steps; normalised MAAE (chance 1).", '',
             head, '|' + '---|' * (3 + len(styles))]
    for m in r['models']:
        d = m['styles']['default']['nmaae']
        cells = [f"`{m['model']}`", f"{d['x']:.3f} / {d['y']:.3f} / {d['z']:.3f}"]
        for s in styles:
            st = m['styles'][s]
            cells.append(f"{st['nmaae']['z']:.3f} ({st['z_ratio']:.2f}x), {st['mean_sigma2']:.3f} "
                         f"({st['sigma2_ratio']:.2f}x)")
        p = m['phase_wide']
        cells.append(f"{p['median_spread_deg']:.1f} / {p['median_estimated_distance_deg']:.1f} = {p['ratio']:.2f}")
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + f"\n\nWall time {r['wall_s'] / 60:.0f} min.\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--models', nargs='+', default=['models/echoposed_k5.onnx'])
    ap.add_argument('--seeds', default='1000-1009')
    ap.add_argument('--styles', nargs='+', default=['vendor_b', 'vendor_c', 'clinical'], help='held-out styles')
    ap.add_argument('--json', required=True)
    ap.add_argument('--markdown')
    args = ap.parse_args()
    t0 = time.time()
    result = {'seeds': args.seeds, 'held_out_styles': args.styles,
              'models': [measure(m, args.seeds, args.styles) for m in args.models]}
    result['wall_s'] = time.time() - t0
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(markdown(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
