"""Start, supervise and stop the nodes of a launch as processes (``echoposed launch``).

For machines without ``ros2 launch``: each :class:`NodeSpec` becomes
``python -m <module> --ros-args -r __node:=NAME [-r __ns:=NS] [remaps] --params-file <its parameters>``,
its output prefixed with the node name. The run ends at ``duration`` seconds, on Ctrl-C /
SIGTERM, when a long-running node exits, or when a one-shot node fails; every node is then sent
SIGINT (rclpy shuts down cleanly), then SIGTERM, then SIGKILL, each after a grace period. A node
still running after SIGTERM is first sent SIGUSR1, on which the nodes print their threads' Python
stacks (echoposed_ros/nodes/process.py): the failure's output then shows where it hung.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml

from .description import NodeSpec, fully_qualified_name, node_parameters

__all__ = ['TAIL_LINES', 'NodeProcess', 'RunResult', 'command_for', 'run_nodes']

TAIL_LINES = 80   # a node's last output lines kept for its failure report (room for a stack dump)
DONE = (0, -signal.SIGALRM)   # a one-shot node's success: exit 0, or its teardown alarm after its work


def command_for(spec: NodeSpec, overrides_dir: Path) -> list[str]:
    """The command line that runs one node in its namespace, with its parameters (its YAML and
    overrides, :func:`node_parameters`) in one file keyed by its fully qualified name."""
    cmd = [sys.executable, '-m', spec.module, '--ros-args', '-r', f'__node:={spec.name}']
    if spec.namespace.strip('/'):
        cmd += ['-r', f'__ns:=/{spec.namespace.strip("/")}']
    for source, target in spec.remappings:
        cmd += ['-r', f'{source}:={target}']
    parameters = node_parameters(spec)
    if parameters:
        path = overrides_dir / f'{spec.name}.yaml'
        path.write_text(yaml.safe_dump({fully_qualified_name(spec): {'ros__parameters': parameters}}))
        cmd += ['--params-file', str(path)]
    return cmd


@dataclass
class NodeProcess:
    spec: NodeSpec
    process: subprocess.Popen
    pump: threading.Thread
    tail: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunResult:
    """How a run ended: reason ('duration', 'interrupted', 'node_exited', 'node_failed'),
    the exit code of each node, and the last lines of output of any node that failed."""

    reason: str
    exit_codes: dict[str, int | None]
    failures: dict[str, list[str]]
    teardown_alarms: tuple[str, ...] = ()   # stopped nodes whose teardown hung and was ended by its alarm

    @property
    def ok(self) -> bool:
        return self.reason in ('duration', 'interrupted', 'done') and not self.failures


def _pump(stream: IO[str], prefix: str, out: IO[str], tail: list[str]) -> None:
    for line in stream:
        tail.append(line.rstrip())
        del tail[:-TAIL_LINES]
        out.write(f'[{prefix}] {line}')
        out.flush()


def _start(spec: NodeSpec, overrides_dir: Path, out: IO[str], env: dict[str, str]) -> NodeProcess:
    process = subprocess.Popen(command_for(spec, overrides_dir), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1, env=env,
                               start_new_session=True)
    tail: list[str] = []
    pump = threading.Thread(target=_pump, args=(process.stdout, spec.name, out, tail), daemon=True)
    pump.start()
    return NodeProcess(spec, process, pump, tail)


def _stop(nodes: Sequence[NodeProcess], grace_s: float) -> None:
    """Stop the ``stop_first`` nodes, then the others; each group SIGINT, SIGTERM, SIGKILL."""
    _stop_group([n for n in nodes if n.spec.stop_first], grace_s)
    _stop_group([n for n in nodes if not n.spec.stop_first], grace_s)


def _stop_group(nodes: Sequence[NodeProcess], grace_s: float, dump_s: float = 0.5) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGKILL):
        alive = [n for n in nodes if n.process.poll() is None]
        if not alive:
            return
        for n in alive:
            try:
                os.killpg(n.process.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (dump_s if sig == signal.SIGUSR1 else grace_s)
        while time.monotonic() < deadline and any(n.process.poll() is None for n in alive):
            time.sleep(0.05)


def run_nodes(specs: Sequence[NodeSpec], duration: float | None = None, out: IO[str] = sys.stdout,
              tick: Callable[[], bool] | None = None, grace_s: float = 5.0,
              on_end: Callable[[], None] | None = None) -> RunResult:
    """Run the nodes until ``duration`` s pass, Ctrl-C, a node exits, or ``tick()`` returns True.

    ``tick`` is called about 20 times a second from this thread (the monitor uses it to spin).
    ``on_end()`` runs once the run has ended and before any node is stopped (the monitor stops
    listening there, so its summary is the run's end, not the nodes' shutdown).
    """
    env = dict(os.environ)
    env.setdefault('PYTHONUNBUFFERED', '1')
    stop = threading.Event()
    reason = 'duration'
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum, frame):
        stop.set()

    for s in previous:
        signal.signal(s, on_signal)
    nodes: list[NodeProcess] = []
    ended_early: dict[str, int] = {}  # nodes that ended on their own before the stop
    with tempfile.TemporaryDirectory(prefix='echoposed-launch-') as tmp:
        try:
            nodes = [_start(spec, Path(tmp), out, env) for spec in specs]
            start = time.monotonic()
            while True:
                for n in nodes:
                    if n.spec.name not in ended_early and n.process.poll() is not None:
                        ended_early[n.spec.name] = n.process.returncode
                if stop.is_set():
                    reason = 'interrupted'
                elif duration is not None and time.monotonic() - start >= duration:
                    reason = 'duration'
                elif any(n.spec.one_shot and ended_early.get(n.spec.name, 0) not in DONE for n in nodes):
                    reason = 'node_failed'
                elif any(not n.spec.one_shot and n.spec.name in ended_early for n in nodes):
                    reason = 'node_exited'
                elif tick is not None and tick():
                    reason = 'done'
                else:
                    if tick is None:
                        time.sleep(0.05)
                    continue
                break
        finally:
            if on_end is not None:
                on_end()
            _stop(nodes, grace_s)
            for n in nodes:
                n.pump.join(timeout=2)
            for s, handler in previous.items():
                signal.signal(s, handler)
    # A failure: a one-shot node that exited non-zero, a long-running node that ended by itself,
    # or any node that did not stop cleanly when asked (exit code other than 0 or our signals).
    # A stopped node (or a one-shot node) ended by SIGALRM did its work and hung in the
    # middleware's teardown, which its own alarm then ended (arm_teardown_alarm): a clean end.
    clean = (0, -signal.SIGINT, -signal.SIGTERM, -signal.SIGALRM)
    failures = {n.spec.name: list(n.tail) for n in nodes if (
        (n.spec.name in ended_early and (not n.spec.one_shot or ended_early[n.spec.name] not in DONE))
        or (n.spec.name not in ended_early and n.process.returncode not in clean))}
    alarms = tuple(n.spec.name for n in nodes if n.process.returncode == -signal.SIGALRM
                   and (n.spec.one_shot or n.spec.name not in ended_early))
    for name in alarms:
        out.write(f'[{name}] its teardown hung in the middleware and was ended by its alarm (stacks above)\n')
    out.flush()
    return RunResult(reason, {n.spec.name: n.process.returncode for n in nodes}, failures, alarms)
