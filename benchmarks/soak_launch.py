"""Soak test of the full graph: does any process's memory grow, does the loop keep its rate?

Runs ``echoposed launch sim_guidance [name:=value ...] --duration D --quiet`` on a ROS domain of its
own (localhost only) and, every ``--interval`` s, samples the resident memory of every process of
the launch (the launcher, which holds the run monitor, and each node: ``VmRSS`` of
``/proc/<pid>/status``) and the loop rate (messages per second on the pose topic the controller
consumes, counted by a subscriber in this process). After a warm-up (``--warmup`` s, not judged)
each process's growth is the median of the last tenth of the samples against the median of the
first tenth, in percent, with a least-squares slope in MB/min; a process is flat when its growth
stays within ``--tolerance`` (5 % by default). Writes JSON (every sample) and a Markdown summary.

    .venv/bin/python benchmarks/soak_launch.py --duration 1800 \\
        --json docs/bench/soak_launch.json --markdown docs/bench/soak_launch.md
    .venv/bin/python benchmarks/soak_launch.py --duration 300 estimator:=oracle robot:=kinematic

Launch arguments (``name:=value``) go to the launch as given (default ``cardiac_motion:=true``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ECHOPOSED = Path(sys.executable).with_name('echoposed')
NODE_NAME = re.compile(r'__node:=(\S+)')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('arguments', nargs='*', metavar='name:=value', default=['cardiac_motion:=true'],
                        help='launch arguments of sim_guidance (default cardiac_motion:=true)')
    parser.add_argument('--duration', type=float, default=1800.0, help='s of run (default 1800)')
    parser.add_argument('--interval', type=float, default=10.0, help='s between samples (default 10)')
    parser.add_argument('--warmup', type=float, default=60.0, help='s at the start not judged (default 60)')
    parser.add_argument('--tolerance', type=float, default=0.05, help='largest growth of a flat process (0.05)')
    parser.add_argument('--markdown', type=Path, default=None, help='write a Markdown summary here')


# -- processes and their memory ------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    """{ppid: [pid, ...]} of every process now."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f'/proc/{entry}/stat').read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(')') + 2:].split()[1])   # fields after the command name: state, ppid
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    tree, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MB (VmRSS), None once it has gone."""
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def label(pid: int, root: int) -> str:
    """'launcher' for the root, else the node name from ``-r __node:=NAME``, else the command."""
    if pid == root:
        return 'launcher'
    try:
        argv = Path(f'/proc/{pid}/cmdline').read_bytes().split(b'\0')
    except OSError:
        return f'pid {pid}'
    for arg in argv:
        found = NODE_NAME.search(arg.decode(errors='replace'))
        if found:
            return found.group(1)
    return ' '.join(a.decode(errors='replace') for a in argv[:3]).strip() or f'pid {pid}'


# -- the loop rate ---------------------------------------------------------------------------------

class RateCounter:
    """Counts messages on the pose topic in a node of its own, spun in a thread."""

    def __init__(self, topic: str) -> None:
        import rclpy
        from echoposed_msgs.msg import EchoPose
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('echoposed_soak_counter', context=self.context)
        self.count = 0
        self.node.create_subscription(EchoPose, topic, self._on_pose, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _on_pose(self, msg) -> None:
        self.count += 1

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.1)

    def close(self) -> None:
        import rclpy

        self._stop.set()
        self._thread.join(timeout=2)
        self.executor.remove_node(self.node)
        self.node.destroy_node()
        self.executor.shutdown(timeout_sec=1)
        rclpy.try_shutdown(context=self.context)


# -- judging ---------------------------------------------------------------------------------------

def _slope_per_min(t: list[float], y: list[float]) -> float:
    if len(t) < 2:
        return 0.0
    mt, my = statistics.fmean(t), statistics.fmean(y)
    den = sum((a - mt) ** 2 for a in t)
    return 60.0 * sum((a - mt) * (b - my) for a, b in zip(t, y)) / den if den > 0 else 0.0


def judge(samples: list[dict], warmup: float, tolerance: float) -> tuple[dict, dict]:
    """Per process: RSS at the start and end of the judged span, growth and slope; the loop's rates."""
    judged = [s for s in samples if s['t'] >= warmup] or samples
    processes = {}
    for name in sorted({n for s in samples for n in s['rss_mb']}):
        pts = [(s['t'], s['rss_mb'][name]) for s in judged if name in s['rss_mb']]
        if not pts:
            continue
        t, y = [p[0] for p in pts], [p[1] for p in pts]
        k = max(1, len(y) // 10)
        first, last = statistics.median(y[:k]), statistics.median(y[-k:])
        growth = (last - first) / first if first > 0 else 0.0
        processes[name] = {'start_mb': first, 'end_mb': last, 'min_mb': min(y), 'max_mb': max(y),
                           'growth': growth, 'slope_mb_per_min': _slope_per_min(t, y), 'samples': len(y),
                           'flat': abs(growth) <= tolerance}
    rates = [s['loop_hz'] for s in judged if s.get('loop_hz') is not None]
    loop = {'min_hz': min(rates, default=None), 'median_hz': statistics.median(rates) if rates else None,
            'max_hz': max(rates, default=None), 'intervals': len(rates)}
    return processes, loop


# -- the run ---------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict:
    from echoposed_ros.bringup.domain import reserve_domain

    reservation = reserve_domain()   # held until this process ends; test runs and launches respect it
    domain = str(reservation.domain_id)
    os.environ['ROS_DOMAIN_ID'] = domain              # the launch and the counter share it, alone
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    oracle = 'estimator:=oracle' in args.arguments
    topic = 'probe/true_pose' if oracle else 'echoposed/pose'
    counter = RateCounter(topic)
    samples: list[dict] = []
    with tempfile.TemporaryDirectory(prefix='echoposed-soak-') as tmp:
        summary_path = Path(tmp) / 'summary.json'
        cmd = [str(ECHOPOSED), 'launch', 'sim_guidance', *args.arguments, '--quiet',
               '--duration', str(args.duration), '--summary', str(summary_path)]
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output: list[str] = []
        pump = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
        pump.start()
        try:
            last_t, last_count = 0.0, counter.count
            next_at = start + args.interval
            while proc.poll() is None:
                time.sleep(max(0.0, min(1.0, next_at - time.monotonic())))
                if time.monotonic() < next_at:
                    continue
                next_at += args.interval
                t, count = time.monotonic() - start, counter.count
                pids = process_tree(proc.pid)
                sample = {'t': round(t, 2), 'loop_hz': (count - last_count) / (t - last_t), 'rss_mb': {}}
                for pid in pids:
                    mb = rss_mb(pid)
                    if mb is not None:
                        sample['rss_mb'][label(pid, proc.pid)] = round(mb, 2)
                samples.append(sample)
                last_t, last_count = t, count
                print(f"[{t:7.1f} s] loop {sample['loop_hz']:5.1f} Hz  " + '  '.join(
                    f'{n} {mb:.0f} MB' for n, mb in sorted(sample['rss_mb'].items())), flush=True)
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=120)
            pump.join(timeout=5)
            counter.close()
        launch_summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    processes, loop = judge(samples, args.warmup, args.tolerance)
    doc = {
        'launch': 'sim_guidance', 'arguments': list(args.arguments), 'duration_s': args.duration,
        'interval_s': args.interval, 'warmup_s': args.warmup, 'tolerance': args.tolerance,
        'pose_topic': topic, 'exit_code': proc.returncode,
        'machine': f'{platform.machine()}, {os.cpu_count()} cores',
        'load_average': list(os.getloadavg()),
        'date': datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC'),
        'processes': processes, 'loop': loop,
        'all_flat': bool(processes) and all(p['flat'] for p in processes.values()),
        'launch_summary': None if launch_summary is None else {k: launch_summary.get(k) for k in (
            'ended', 'final_error_deg', 'converged', 'loop_hz', 'command_hz', 'poses', 'images',
            'rejected_messages', 'failed_nodes')},
        'launch_output_tail': [] if proc.returncode == 0 else output[-30:],
        'samples': samples,
    }
    if getattr(args, 'markdown', None):
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(doc))
    return doc


def markdown(doc: dict) -> str:
    lo = doc['loop']
    minutes = doc['duration_s'] / 60.0
    lines = ['# Soak test of the running graph (benchmarks/soak_launch.py)', '',
             f"`echoposed launch sim_guidance {' '.join(doc['arguments'])}` for {doc['duration_s']:.0f} s "
             f"({minutes:.0f} min); {doc['machine']}; {doc['date']}; load average {doc['load_average'][0]:.1f} at "
             f"the end; a sample every {doc['interval_s']:.0f} s, the first {doc['warmup_s']:.0f} s not judged; "
             f"launch exit code {doc['exit_code']}.", '',
             '| process | RSS start (MB) | RSS end (MB) | min / max (MB) | growth | slope (MB/min) | flat '
             f"(within {100 * doc['tolerance']:.0f} %) |",
             '| --- | --- | --- | --- | --- | --- | --- |']
    for name, p in doc['processes'].items():
        lines.append(f"| {name} | {p['start_mb']:.1f} | {p['end_mb']:.1f} | {p['min_mb']:.1f} / {p['max_mb']:.1f} | "
                     f"{100 * p['growth']:+.1f} % | {p['slope_mb_per_min']:+.2f} | {'yes' if p['flat'] else 'no'} |")
    fmt = (lambda v: 'n/a' if v is None else f'{v:.1f}')   # noqa: E731
    lines += ['', f"Loop rate ({doc['pose_topic']}, per {doc['interval_s']:.0f} s interval): min {fmt(lo['min_hz'])}, "
              f"median {fmt(lo['median_hz'])}, max {fmt(lo['max_hz'])} Hz over {lo['intervals']} intervals."]
    s = doc['launch_summary']
    if s:
        lines += ['', f"Run: ended by {s['ended']}; final error {fmt(s['final_error_deg'])} deg, converged "
                  f"{s['converged']}; monitor loop {fmt(s['loop_hz'])} Hz; {s['poses']} poses, {s['images']} images; "
                  f"rejected messages {s['rejected_messages']}; failed nodes {s['failed_nodes'] or 'none'}."]
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', type=Path, default=None, help='write every sample and the figures here')
    add_arguments(parser)
    args = parser.parse_args(argv)
    doc = run(args)
    print(markdown(doc))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + '\n')
    return 0 if doc['exit_code'] == 0 else 1


if __name__ == '__main__':
    raise SystemExit(main())
