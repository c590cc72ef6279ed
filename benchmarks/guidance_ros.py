"""Closed-loop guidance through ROS topics, as a robot would run it.

For each held-out phantom seed, runs ``echoposed launch sim_guidance`` (sim with the PyBullet arm,
pose node with the model, controller, target setter; each a process talking DDS on an isolated
domain) without and with cardiac motion, and collects the launch summaries: the final effective
error from the simulator's ground truth, convergence, the loop rate (pose messages per second),
the largest commanded speeds. Targets rotate over A4C, A2C, A3C; start poses are random per seed.

    .venv/bin/python benchmarks/guidance_ros.py --seeds 1000-1019 --json docs/eval/ros/guidance_ros.json \\
        --markdown docs/eval/ros/guidance_ros.md

Baseline in the same run: ``--oracle-too`` repeats each run with the controller fed the
simulator's ground truth, so the model's share of the error is visible beside the loop's own.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VIEWS = ('A4C', 'A2C', 'A3C')
ECHOPOSED = Path(sys.executable).with_name('echoposed')


def seed_range(text: str) -> list[int]:
    first, _, last = text.partition('-')
    return list(range(int(first), int(last or first) + 1))


def run_one(seed: int, motion: bool, estimator: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / 'summary.json'
        cmd = [str(ECHOPOSED), 'launch', 'sim_guidance', f'seed:={seed}', f'start_seed:={seed}',
               f'target:={VIEWS[seed % 3]}', f'robot:={args.robot}', f'cardiac_motion:={str(motion).lower()}',
               f'estimator:={estimator}', f'command_source:={args.command_source}',
               '--duration', str(args.duration), '--stop-after-converged', str(args.hold),
               '--quiet', '--isolated', '--summary', str(summary)]
        if args.model:
            cmd.append(f'model:={args.model}')
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 180)
        result = json.loads(summary.read_text()) if summary.exists() else {'error': proc.stderr[-2000:]}
    result.update(seed=seed, motion=motion, estimator=estimator, exit_code=proc.returncode,
                  wall_s=time.monotonic() - started)
    return result


def summarise(runs: list[dict], tolerance: float) -> dict:
    errors = [r['final_error_deg'] for r in runs if r.get('final_error_deg') is not None]
    hz = [r['loop_hz'] for r in runs if r.get('loop_hz')]
    return {
        'runs': len(runs),
        'tolerance_deg': tolerance,
        'success_rate': sum(e <= tolerance for e in errors) / len(runs) if runs else 0.0,
        'converged_rate': sum(bool(r.get('converged')) for r in runs) / len(runs) if runs else 0.0,
        # launches where a node failed (e.g. the target never set): counted as misses above, listed here
        'failed_launches': [f"seed {r['seed']}: {', '.join(r.get('failed_nodes') or ['launch'])} "
                            f"(exit {r.get('exit_code')})" for r in runs
                            if r.get('failed_nodes') or r.get('exit_code') or 'error' in r],
        'final_error_deg_mean': statistics.fmean(errors) if errors else None,
        'final_error_deg_median': statistics.median(errors) if errors else None,
        'loop_hz_median': statistics.median(hz) if hz else None,
        'loop_hz_min': min(hz) if hz else None,
        'max_orbit_speed': max((r.get('max_orbit_speed', 0.0) for r in runs), default=0.0),
        'max_probe_speed': max((r.get('max_probe_speed', 0.0) for r in runs), default=0.0),
    }


def markdown(report: dict) -> str:
    model_text = ('none' if report['estimators'] == ['oracle']
                  else '`' + (report['model'] or 'models/echoposed_k5.onnx') + '`')
    lines = ['# Guidance through ROS topics (benchmarks/guidance_ros.py)', '',
             f"Estimators: {', '.join(report['estimators'])}; model: "
             f"{model_text}; "
             f"robot: {report['robot']}; command "
             f"source: {report['command_source']}; seeds {report['seeds']}; measured {report['date']} on "
             f"{report['machine']}.", '',
             '| setting | runs | success (<= tol) | tol (deg) | converged | mean / median final error (deg) '
             '| loop Hz median (min) | failed launches |', '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for name, s in report['summary'].items():
        mean = 'n/a' if s['final_error_deg_mean'] is None else f"{s['final_error_deg_mean']:.2f}"
        median = 'n/a' if s['final_error_deg_median'] is None else f"{s['final_error_deg_median']:.2f}"
        hz = 'n/a' if s['loop_hz_median'] is None else f"{s['loop_hz_median']:.1f} ({s['loop_hz_min']:.1f})"
        lines.append(f"| {name} | {s['runs']} | {100 * s['success_rate']:.0f} % | {s['tolerance_deg']:g} | "
                     f"{100 * s['converged_rate']:.0f} % | {mean} / {median} | {hz} | "
                     f"{'; '.join(s.get('failed_launches', [])) or 'none'} |")
    return '\n'.join(lines) + '\n'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seeds', default='1000-1019', help='held-out phantom seeds A-B')
    parser.add_argument('--model', default='', help='ONNX model (default: the shipped one)')
    parser.add_argument('--robot', choices=('arm', 'kinematic'), default='arm')
    parser.add_argument('--command-source', choices=('body', 'cartesian'), default='body')
    parser.add_argument('--duration', type=float, default=60.0, help='s per run at most')
    parser.add_argument('--hold', type=float, default=2.0, help='s of converged state that end a run')
    parser.add_argument('--motion', choices=('both', 'static', 'beating'), default='both')
    parser.add_argument('--oracle-too', action='store_true', help='also run each case with the ground-truth oracle')
    parser.add_argument('--oracle-only', action='store_true', help='only the ground-truth oracle (the loop alone)')
    parser.add_argument('--json', type=Path, required=True)
    parser.add_argument('--markdown', type=Path, default=None)
    args = parser.parse_args()
    motions = {'both': (False, True), 'static': (False,), 'beating': (True,)}[args.motion]
    estimators = ('oracle',) if args.oracle_only else ('model', 'oracle') if args.oracle_too else ('model',)
    runs = []
    for seed in seed_range(args.seeds):
        for motion in motions:
            for estimator in estimators:
                r = run_one(seed, motion, estimator, args)
                runs.append(r)
                print(f"seed {seed} motion {motion} {estimator}: final {r.get('final_error_deg')} deg, "
                      f"converged {r.get('converged')}, state {r.get('final_state')}, loop {r.get('loop_hz', 0):.1f} Hz"
                      + (f", failed {r['failed_nodes']}" if r.get('failed_nodes') else ''), flush=True)
    summary = {}
    for estimator in estimators:
        for motion in motions:
            subset = [r for r in runs if r['estimator'] == estimator and r['motion'] == motion]
            summary[f"{estimator}, {'beating' if motion else 'static'}"] = summarise(subset, 6.0 if motion else 5.0)
    import platform
    report = {'model': '' if args.oracle_only else args.model, 'estimators': list(estimators), 'robot': args.robot,
              'command_source': args.command_source, 'seeds': args.seeds,
              'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
              'machine': f'{platform.machine()}, {__import__("os").cpu_count()} cores', 'summary': summary,
              'runs': runs}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + '\n')
    if args.markdown is not None:
        args.markdown.write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == '__main__':
    sys.exit(main())
