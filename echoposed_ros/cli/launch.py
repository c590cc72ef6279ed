"""``echoposed launch NAME [name:=value ...]``: run a launch of echoposed without ``ros2 launch``.

Starts the same nodes with the same parameters as ``launch/NAME.launch.py`` (both read
``echoposed_ros.bringup.description``), supervises them, stops them on Ctrl-C, at ``--duration``
or once guidance has held 'converged' for ``--stop-after-converged`` seconds, and prints a
summary. For ``sim_guidance`` the summary holds the simulator's ground truth: ``final_error_deg``,
``converged``, ``loop_hz``, ``final_state`` (``--summary PATH`` writes it as JSON; ``--plot PATH``
draws error against time with the current and target slices).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from ..errors import EchoposedError
from .errors import UsageError

__all__ = ['add_arguments', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('launch', help='launch name: sim_guidance or guidance')
    parser.add_argument('arguments', nargs='*', metavar='name:=value', help='launch arguments')
    parser.add_argument('--duration', type=float, default=None, help='stop after this many seconds')
    parser.add_argument('--stop-after-converged', type=float, default=None, metavar='S',
                        help='stop once guidance has reported converged for S seconds')
    parser.add_argument('--summary', type=Path, default=None, help='write the run summary as JSON here')
    parser.add_argument('--plot', type=Path, default=None, help='write a picture of the run here (PNG)')
    parser.add_argument('--show-args', action='store_true', help='list the launch arguments and exit')
    parser.add_argument('--quiet', action='store_true', help="do not echo the nodes' output")
    parser.add_argument('--isolated', action='store_true',
                        help='run on a random ROS domain (1-101) with localhost-only discovery, so other '
                             'graphs on this machine or network are neither heard nor disturbed')


def _parse(pairs: list[str]) -> dict[str, str]:
    given = {}
    for pair in pairs:
        name, sep, value = pair.partition(':=')
        if not sep or not name:
            raise UsageError(f'launch argument {pair!r}: expected name:=value')
        given[name] = value
    return given


def run(args: argparse.Namespace) -> int:
    from ..bringup.description import LAUNCHES, resolve

    if args.show_args:
        spec = LAUNCHES.get(args.launch)
        if spec is None:
            print(f'echoposed launch: unknown launch {args.launch!r}; expected one of {", ".join(LAUNCHES)}',
                  file=sys.stderr)
            return 2
        for a in spec.arguments:
            choices = f" (one of {', '.join(a.choices)})" if a.choices else ''
            print(f'  {a.name}:={a.default!r}\n      {a.description}{choices}')
        return 0
    try:
        launch_args, nodes = resolve(args.launch, _parse(args.arguments))
    except EchoposedError as exc:
        print(f'echoposed launch: {exc}', file=sys.stderr)
        return 2
    if args.duration is None and args.stop_after_converged is None:
        print('echoposed launch: running until Ctrl-C', file=sys.stderr)
    return _run(args, launch_args, nodes)


def _isolate() -> str:
    """Reserve a ROS domain for the life of this process (the lock ``echoposed_ros.bringup.domain``
    holds, which test runs and other isolated launches respect) with localhost-only discovery, for
    this process and its children."""
    import os

    from ..bringup.domain import reserve_domain

    global _RESERVATION
    _RESERVATION = reserve_domain()
    domain = str(_RESERVATION.domain_id)
    os.environ['ROS_DOMAIN_ID'] = domain
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    return domain


_RESERVATION = None  # the isolated launch's domain, held until the process ends


def _run(args: argparse.Namespace, launch_args: dict[str, str], nodes: list) -> int:
    if args.isolated:
        print(f'echoposed launch: isolated on ROS domain {_isolate()} (localhost only)', file=sys.stderr)
    import rclpy

    from ..bringup.launcher import run_nodes
    from ..bringup.monitor import RunMonitor, SpinThread

    monitor = None
    context = rclpy.Context()
    rclpy.init(args=['echoposed-launch'], context=context)  # launch arguments are not ROS arguments
    try:
        if args.launch == 'sim_guidance':
            pose_topic = 'probe/true_pose' if launch_args['estimator'] == 'oracle' else 'echoposed/pose'
            # in the nodes' namespace, reading the image topic they use
            remap = ['--ros-args', '-r', f'probe/image:={launch_args["image_topic"]}']
            monitor = RunMonitor(launch_args['target'], pose_topic=pose_topic, context=context,
                                 namespace=launch_args['namespace'].strip() or None, cli_args=remap)
        # The monitor spins in its own thread, so no message waits on the supervision loop; an
        # error in that thread ends the run as failed ('monitor_failed'), never a frozen summary.
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        spinner = None
        if monitor is not None:
            executor.add_node(monitor)
            spinner = SpinThread(executor).start()

        def tick() -> bool:
            time.sleep(0.05)
            if spinner is not None and spinner.failed:
                return True
            return (monitor is not None and args.stop_after_converged is not None
                    and monitor.converged_for() >= args.stop_after_converged)

        def stop_listening() -> None:   # the run has ended: the summary is its end, not the shutdown
            if spinner is not None:
                spinner.stop(timeout=2.0)

        # --quiet: the nodes' output goes nowhere (each node's last lines are still kept for failures)
        out = open(os.devnull, 'w') if args.quiet else sys.stdout   # closed below
        try:
            result = run_nodes(nodes, duration=args.duration, out=out, tick=tick, on_end=stop_listening)
        finally:
            if out is not sys.stdout:
                out.close()
        executor.shutdown(timeout_sec=1.0)
        monitor_error = spinner.error if spinner is not None else None
        summary = {'launch': args.launch, 'arguments': launch_args,
                   'ended': 'monitor_failed' if monitor_error else result.reason,
                   'exit_codes': result.exit_codes, 'failed_nodes': sorted(result.failures),
                   'failed_output': dict(sorted(result.failures.items())),
                   'teardown_alarms': list(result.teardown_alarms)}
        if monitor_error:
            summary['monitor_error'] = monitor_error
        if monitor is not None:
            summary.update(monitor.summary())
            if args.plot is not None:
                summary['plot'] = str(monitor.plot(args.plot))
    finally:
        if monitor is not None:
            monitor.destroy_node()
        rclpy.try_shutdown(context=context)
    for name, tail in result.failures.items():
        killed = result.exit_codes.get(name) == -signal.SIGKILL   # its output ends with its stacks
        print(f'--- {name} failed{" (killed: it ignored SIGINT and SIGTERM)" if killed else ""}; '
              'its last output:', file=sys.stderr)
        print('\n'.join(tail if killed else tail[-15:]), file=sys.stderr)
    if monitor_error:
        print(f'--- the run monitor failed (its summary stops there):\n{spinner.traceback.rstrip()}',
              file=sys.stderr)
    if args.summary is not None:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2) + '\n')
    _print_summary(summary)
    return 0 if result.ok and not monitor_error else 1


def _print_summary(s: dict) -> None:
    print(f"\n== echoposed launch {s['launch']}: ended by {s['ended']}")
    if 'final_error_deg' in s:
        err = s['final_error_deg']
        start = s['initial_error_deg']
        print(f"   final effective error (simulator ground truth): "
              f"{'n/a' if err is None else f'{err:.2f} deg'} "
              f"(start {start if start is None else round(start, 2)} deg)")
        print(f"   guidance state: {s['final_state']} (converged: {s['converged']}); loop {s['loop_hz']:.1f} Hz")
        if s.get('rejected_messages'):
            print(f"   rejected malformed messages: {s['rejected_messages']} ({s['last_rejection']})")
        if 'plot' in s:
            print(f"   picture: {s['plot']}")
    if s.get('monitor_error'):
        print(f"   run monitor failed: {s['monitor_error']}")
    if s['failed_nodes']:
        print(f"   failed nodes: {', '.join(s['failed_nodes'])}")
