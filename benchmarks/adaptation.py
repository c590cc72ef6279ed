"""Adaptation to one patient from the robot's own motion, measured on patients of a style never trained on.

For each phantom seed: the adaptation sweep runs in the simulator (``echoposed adapt --sim``, the
patient in ``--style``, the sweep starting from a random guidance start pose), the shipped model is
fine-tuned on it for ``--budget``, and both models are measured on that patient:
- calibration in the held-out style (normalised MAAE about x, y, z; mean sigma^2), beside the
  shipped model on the same patient in the default style (the in-style figure);
- closed-loop guidance on the patient in the held-out style (``echoposed eval guidance``, static and
  beating runs, share within 5 deg, mean final error);
- forgetting: calibration of each adapted model on held-out default-style phantoms (``--phantoms``)
  against the shipped model's in the same run.
Calibrations use 2 deg steps (``--z-step-deg 2 --tilt-step-deg 2``) to keep the run short.

    .venv/bin/python benchmarks/adaptation.py --seeds 4003-4005 --style vendor_c --budget 5m \\
        --json docs/eval/adaptation/adaptation.json --markdown docs/eval/adaptation/adaptation.md

``--reuse`` keeps adapted models already in ``--work`` and measures again. ``--blend A`` exports
``A * fine-tuned + (1 - A) * shipped`` weights (``echoposed adapt --blend``; default: its own); with
``--from-work DIR`` the fine-tuned checkpoints of an earlier run in DIR are blended instead of fine-tuning
again (a run with ``--blend 1 --work DIR`` first, then any blend of the same fine-tunes in minutes):

    .venv/bin/python benchmarks/adaptation.py --seeds 4003-4005 --style vendor_c --steps 1500 --blend 1 \\
        --work out/adaptation_full --json ... --markdown ...
    .venv/bin/python benchmarks/adaptation.py --seeds 4003-4005 --style vendor_c --steps 1500 \\
        --from-work out/adaptation_full --work out/adaptation --json ... --markdown ...
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from echoposed_ros.adapt.finetune import AdaptSettings, export_adapted

ECHOPOSED = Path(sys.executable).with_name('echoposed')
STEP = ['--z-step-deg', '2', '--tilt-step-deg', '2']


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f'{" ".join(cmd)}\nexited {proc.returncode}: {proc.stderr[-2000:]}')


def calibration(seeds: str, model: Path, out: Path, style: str = '') -> dict:
    cmd = [str(ECHOPOSED), 'eval', 'calibration', '--seeds', seeds, '--model', str(model), '--json', str(out), *STEP]
    if style:
        cmd += ['--style', style]
    _run(cmd)
    d = json.loads(out.read_text())
    return {'nmaae': {a: v['normalized_maae'] for a, v in d['axes'].items()}, 'mean_sigma2': d['mean_sigma2'],
            # the turns' own error, without the one reference slice's (eval calibration, reference_offset_deg)
            'z_without_reference_deg': d['axes']['z'].get('maae_without_reference_deg')}


def guidance(seed: int, model: Path, out: Path, style: str, runs: int) -> dict:
    _run([str(ECHOPOSED), 'eval', 'guidance', '--seeds', str(seed), '--style', style, '--model', str(model),
          '--runs', str(runs), '--inter-runs', '0', '--json', str(out), '--quiet'])
    d = json.loads(out.read_text())
    dataset = next(iter(d['datasets'].values()))
    return {name: {'within_5_deg': dataset[f'intra_{name}']['success_within_5deg'],
                   'mean_deg': dataset[f'intra_{name}']['mean_deg'],
                   'median_deg': dataset[f'intra_{name}']['median_deg']} for name in ('static', 'dynamic')}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--seeds', default='4003-4005', help='held-out phantom patients, A-B')
    ap.add_argument('--style', default='vendor_c', help='acquisition style never trained on')
    ap.add_argument('--budget', default='5m', help='fine-tune time per patient')
    ap.add_argument('--steps', default='0', help='fine-tune steps per patient instead of --budget (0: the budget)')
    ap.add_argument('--holdout', default='0.25', help="share of the sweep's holds that picks the checkpoint (0: last)")
    ap.add_argument('--distill', default='0', help='weight of the shipped model as a teacher on the phantom steps')
    ap.add_argument('--blend', default='', help='share of the fine-tuned weights in the exported model (default: '
                    "echoposed adapt's; 1: them alone)")
    ap.add_argument('--from-work', default='',
                    help="blend the fine-tuned checkpoints of an earlier run's --work folder instead of fine-tuning")
    ap.add_argument('--phantoms', default='1000-1004', help='default-style held-out phantoms (forgetting)')
    ap.add_argument('--runs', type=int, default=40, help='guidance runs per patient, static and beating each')
    ap.add_argument('--model', default='models/echoposed_k5.onnx')
    ap.add_argument('--work', default='out/adaptation', help='folder for the runs')
    ap.add_argument('--reuse', action='store_true',
                    help="keep a patient's adapted model from an earlier run in --work (measure again only)")
    ap.add_argument('--json', required=True)
    ap.add_argument('--markdown')
    args = ap.parse_args()
    work, shipped = Path(args.work), Path(args.model)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    base_phantoms = calibration(args.phantoms, shipped, work / 'phantoms_shipped.json')
    patients = []
    from echoposed_ros.cli.eval_calibration import parse_seeds
    for seed in parse_seeds(args.seeds):
        d = work / str(seed)
        blend = ['--blend', args.blend] if args.blend else []
        if args.from_work and not (args.reuse and (d / 'adapted.onnx').is_file()):
            reblend(Path(args.from_work) / str(seed), shipped, float(args.blend or AdaptSettings().blend), d)
        elif not (args.reuse and (d / 'adapted.onnx').is_file()):
            _run([str(ECHOPOSED), 'adapt', '--sim', str(seed), '--style', args.style, '--start-seed', str(seed),
                  '--out', str(d), '--budget', args.budget, '--holdout', args.holdout,
                  '--steps', args.steps, '--distill', args.distill, *blend])
        adapted = d / 'adapted.onnx'
        record = json.loads((d / 'adapt.json').read_text())
        p = {'seed': seed, 'blend': record['settings'].get('blend', 1.0),
             'sweep_s': record['recording']['duration_s'], 'sweep_frames': record['sweep']['frames'],
             'train_s': record['train_s'], 'steps': record['steps'], 'sweep_check': record.get('sweep_check'),
             'in_style': calibration(str(seed), shipped, d / 'cal_in_style.json'),
             'shipped': calibration(str(seed), shipped, d / 'cal_shipped.json', args.style),
             'adapted': calibration(str(seed), adapted, d / 'cal_adapted.json', args.style),
             'phantoms_adapted': calibration(args.phantoms, adapted, d / 'phantoms_adapted.json'),
             'guidance_shipped': guidance(seed, shipped, d / 'guide_shipped.json', args.style, args.runs),
             'guidance_adapted': guidance(seed, adapted, d / 'guide_adapted.json', args.style, args.runs)}
        p['z_ratio_to_in_style'] = {k: p[k]['nmaae']['z'] / p['in_style']['nmaae']['z'] for k in ('shipped', 'adapted')}
        p['phantom_change'] = {a: p['phantoms_adapted']['nmaae'][a] / base_phantoms['nmaae'][a] - 1 for a in 'xyz'}
        patients.append(p)
        print(json.dumps({k: p[k] for k in ('seed', 'z_ratio_to_in_style', 'phantom_change')}), flush=True)
    result = {'style': args.style, 'budget': args.budget, 'steps': int(args.steps), 'holdout': float(args.holdout),
              'distill': float(args.distill), 'blend': sorted({p['blend'] for p in patients}),
              'from_work': args.from_work,
              'reuse': bool(args.reuse),
              'phantoms': args.phantoms,
              'model': str(shipped),
              'phantoms_shipped': base_phantoms, 'patients': patients, 'wall_s': time.time() - t0,
              'median_z_ratio_adapted': statistics.median(p['z_ratio_to_in_style']['adapted'] for p in patients)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(markdown(result))
    return 0


def reblend(src: Path, shipped: Path, alpha: float, out: Path) -> None:
    """``out/adapted.onnx``: the checkpoint an earlier adaptation in ``src`` exported (``best.pt``, else
    ``last.pt``) blended with ``shipped``; its ``adapt.json`` copied with the blend recorded."""
    out.mkdir(parents=True, exist_ok=True)
    ck = src / 'best.pt' if (src / 'best.pt').is_file() else src / 'last.pt'
    export_adapted(ck, shipped, out, alpha)
    record = json.loads((src / 'adapt.json').read_text())
    record['settings']['blend'] = alpha
    record['blended_from'] = str(ck)
    (out / 'adapt.json').write_text(json.dumps(record, indent=2))


def _deg(cal: dict) -> str:
    value = cal.get('z_without_reference_deg')
    return 'n/a' if value is None else f'{value:.1f}'


def _kept(check: dict | None) -> str:
    if not check:
        return 'last'
    return f"step {check['best_step']}: held-out poses {check['start_deg']:.1f} -> {check['best_deg']:.1f} deg"


def markdown(r: dict) -> str:
    length = f"{r['steps']} fine-tune steps" if r.get('steps') else f"fine-tune budget {r['budget']}"
    if r.get('distill'):
        length += f", the shipped model as a teacher on the phantom steps (weight {r['distill']:g})"
    blends = r.get('blend') or [1.0]
    if blends != [1.0]:
        length += ', exported as ' + ' / '.join(f'{b:g} x fine-tuned + {1 - b:g} x shipped' for b in blends)
        length += ' weights'
    if r.get('from_work'):
        length += f" (the fine-tuned checkpoints of {r['from_work']}, blended)"
    lines = [f"Style `{r['style']}` (never trained on), {length} per patient, "
             f"forgetting on default-style phantoms {r['phantoms']}; 2 deg calibration steps.", '',
             '| patient | sweep | steps (checkpoint kept) | z in style (shipped) '
             '| z held-out style: shipped -> adapted (x in-style) | z without the reference slice, deg: '
             'own style / shipped -> adapted '
             '| sigma^2: shipped -> adapted | guidance static within 5 deg | beating | phantoms x / y / z change |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for p in r['patients']:
        gs, ga = p['guidance_shipped'], p['guidance_adapted']
        ch = p['phantom_change']
        lines.append(
            f"| {p['seed']} | {p['sweep_s']:.0f} s, {p['sweep_frames']} frames "
            f"| {p['steps']} in {p['train_s']:.0f} s ({_kept(p.get('sweep_check'))}) "
            f"| {p['in_style']['nmaae']['z']:.3f} "
            f"| {p['shipped']['nmaae']['z']:.3f} -> {p['adapted']['nmaae']['z']:.3f} "
            f"({p['z_ratio_to_in_style']['shipped']:.2f}x -> {p['z_ratio_to_in_style']['adapted']:.2f}x) "
            f"| {_deg(p['in_style'])} / {_deg(p['shipped'])} -> {_deg(p['adapted'])} "
            f"| {p['shipped']['mean_sigma2']:.3f} -> {p['adapted']['mean_sigma2']:.3f} "
            f"| {gs['static']['within_5_deg']:.0%} -> {ga['static']['within_5_deg']:.0%} "
            f"| {gs['dynamic']['within_5_deg']:.0%} -> {ga['dynamic']['within_5_deg']:.0%} "
            f"| {ch['x']:+.0%} / {ch['y']:+.0%} / {ch['z']:+.0%} |")
    reused = ' (measurements only: the adapted models of an earlier run in --work, --reuse)' if r.get('reuse') else ''
    lines += ['', f"Wall time {r['wall_s'] / 60:.0f} min{reused}."]
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    sys.exit(main())
