"""Cost of one 30 Hz control cycle, and tracking accuracy, of the simulated world.

A cycle is what the sim node does per frame: ``command_body_twist`` (integrate + IK + joint
targets), ``step(1/30)`` (8 physics steps at 240 Hz), ``read_pose`` and ``status``. The kinematic
world, timed in the same run, is the baseline. Twists are random, within the training range's
speeds. Prints (and with ``--json PATH`` writes) milliseconds per cycle, wall clock and this
thread's CPU time (the CPU figure does not depend on what else the machine runs), and the share of
the 33.3 ms budget. Accuracy: poses drawn over the training range (docs/method.md section 3: orbit up to 20
degrees about a random axis normal to z, tilts up to 20 degrees about x and y, any turn about z)
are commanded one after the other with ``command_pose``; after the probe settles, the steady-state
apex distance (mm) and orientation angle (degrees) to the command are recorded. Workspace: poses at
the edge of the working range are set by IK from home; unreachable ones and the smallest joint
margin are counted.

    python benchmarks/bench_world.py --json out.json       # or: echoposed bench world --json out.json

The simulator is imported inside the functions, so building the command line stays cheap.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

__all__ = ['accuracy', 'add_arguments', 'main', 'measure', 'run', 'summary', 'training_pose', 'workspace']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--cycles', type=int, default=300, help='timed control cycles per world (default 300)')
    parser.add_argument('--rate', type=float, default=30.0, help='control rate, Hz (default 30)')
    parser.add_argument('--poses', type=int, default=100, help='poses for the accuracy run (default 100)')
    parser.add_argument('--workspace-poses', type=int, default=80,
                        help='poses per working-range edge for the workspace run (default 80)')


def _rotvec(v) -> np.ndarray:
    from echoposed_ros.geometry import so3_exp
    return so3_exp(np.asarray(v, dtype=np.float64))


def training_pose(rng: np.random.Generator, orbit_deg: float = 20.0, tilt_deg: float = 20.0):
    """A pose ``(R_v, R_p)`` drawn as docs/method.md section 3 draws training poses (about the identity)."""
    a = rng.uniform(0.0, 2 * np.pi)
    orbit = _rotvec(np.array([np.cos(a), np.sin(a), 0.0]) * np.radians(rng.uniform(0.0, orbit_deg)))
    probe = (_rotvec([0.0, 0.0, rng.uniform(-np.pi, np.pi)])
             @ _rotvec([np.radians(rng.uniform(-tilt_deg, tilt_deg)), 0.0, 0.0])
             @ _rotvec([0.0, np.radians(rng.uniform(-tilt_deg, tilt_deg)), 0.0]))
    return orbit, probe


def workspace(orbit_deg: float = 25.0, tilt_deg: float = 20.0, poses: int = 80, seed: int = 6,
              spec=None, radius_mm: float = 90.0) -> dict:
    """Edge of the working range: orbit exactly ``orbit_deg`` about a random axis, tilts of +-``tilt_deg``
    about x and y (the corners), any turn; each pose reached by ``set_pose`` (IK from home). Counts
    unreachable poses and the smallest distance of any arm joint to its limit (degrees)."""
    from echoposed_sim.world.robot import IIWA
    from echoposed_sim.world.scene import ArmWorld
    rng = np.random.default_rng(seed)
    failures, margins = 0, []
    with ArmWorld(np.zeros(3), radius_mm, max_orbit_deg=None, spec=spec or IIWA) as arm:
        lower, upper = arm._ik.lower, arm._ik.upper
        for _ in range(poses):
            a = rng.uniform(0.0, 2 * np.pi)
            orbit = _rotvec(np.array([np.cos(a), np.sin(a), 0.0]) * np.radians(orbit_deg))
            probe = (_rotvec([0.0, 0.0, rng.uniform(-np.pi, np.pi)])
                     @ _rotvec([np.radians(rng.choice([-tilt_deg, tilt_deg])), 0.0, 0.0])
                     @ _rotvec([0.0, np.radians(rng.choice([-tilt_deg, tilt_deg])), 0.0]))
            arm.set_pose(orbit, probe)
            status = arm.status()
            failures += not status.reachable
            q = status.joint_positions[:len(lower)]
            margins.append(float(np.degrees(np.minimum(q - lower, upper - q)).min()))
    return {'orbit_deg': orbit_deg, 'tilt_deg': tilt_deg, 'poses': poses, 'unreachable': failures,
            'min_joint_margin_deg': min(margins), 'p5_joint_margin_deg': float(np.percentile(margins, 5))}


def accuracy(poses: int = 100, seed: int = 1, orbit_deg: float = 20.0, tilt_deg: float = 20.0) -> dict:
    """Steady-state tracking error of ``command_pose`` over poses of the training range (arm world)."""
    from echoposed_sim.world.scene import ArmWorld
    rng = np.random.default_rng(seed)
    errors, settle_s, unreachable = [], [], 0
    with ArmWorld(np.zeros(3), 90.0) as arm:
        for _ in range(poses):
            orbit, probe = training_pose(rng, orbit_deg, tilt_deg)
            arm.command_pose(arm.base_pose.orbit @ orbit, arm.base_pose.probe @ probe)
            if not arm.status().reachable:
                unreachable += 1
                continue
            for k in range(1, 121):  # noqa: B007 (k, the cycles taken, is read after the loop)
                arm.step(1 / 30)
                e = arm.tracking_error()
                if e[0] < 0.05 and e[1] < 0.02:
                    break
            settle_s.append(k / 30)
            arm.step(0.5)
            errors.append(arm.tracking_error())
    e = np.array(errors)
    return {'poses': poses, 'unreachable': unreachable, 'max_mm': float(e[:, 0].max()),
            'median_mm': float(np.median(e[:, 0])), 'max_deg': float(e[:, 1].max()),
            'median_deg': float(np.median(e[:, 1])), 'settle_s_median': float(np.median(settle_s)),
            'settle_s_max': float(np.max(settle_s))}


def _cycles(world, cycles: int, seed: int, rate_hz: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = 1.0 / rate_hz
    times = np.empty(cycles)
    cpu = np.empty(cycles)
    for k in range(cycles):
        w_v = rng.normal(size=3) * 0.1
        w_v[2] = 0.0
        w_p = rng.normal(size=3) * 0.3
        t0, c0 = time.perf_counter(), time.thread_time()
        world.command_body_twist(w_v, w_p, dt)
        world.step(dt)
        world.read_pose()
        world.status()
        times[k] = time.perf_counter() - t0
        cpu[k] = time.thread_time() - c0
        if k % 60 == 59:  # back home now and then: stay inside the working range
            world.set_pose(world.base_pose.orbit, world.base_pose.probe)
    return times * 1e3, cpu * 1e3


def _summary(ms: tuple[np.ndarray, np.ndarray]) -> dict:
    wall, cpu = ms
    return {'mean_ms': float(wall.mean()), 'median_ms': float(np.median(wall)),
            'p95_ms': float(np.percentile(wall, 95)), 'max_ms': float(wall.max()),
            'cpu_mean_ms': float(cpu.mean()), 'cpu_p95_ms': float(np.percentile(cpu, 95))}


def measure(cycles: int = 300, rate_hz: float = 30.0, seed: int = 0) -> dict:
    """Time ``cycles`` control cycles of the arm and the kinematic world; a dict of ms figures."""
    from echoposed_sim.world.kinematic import KinematicWorld
    from echoposed_sim.world.scene import ArmWorld

    centre, radius = np.array([64.0, 64.0, 64.0]), 90.0
    with ArmWorld(centre, radius) as arm:
        t0 = time.perf_counter()
        with ArmWorld(centre, radius):
            pass
        build_s = time.perf_counter() - t0
        arm_ms = _cycles(arm, cycles, seed, rate_hz)
        unreachable = not arm.status().reachable
    kin_ms = _cycles(KinematicWorld(centre, radius), cycles, seed, rate_hz)
    budget = 1e3 / rate_hz
    return {'rate_hz': rate_hz, 'cycles': cycles, 'budget_ms': budget, 'arm': _summary(arm_ms),
            'kinematic': _summary(kin_ms), 'arm_budget_share_p95': float(np.percentile(arm_ms[0], 95) / budget),
            'arm_over_kinematic_cpu': float(arm_ms[1].mean() / kin_ms[1].mean()), 'arm_build_s': build_s,
            'ended_unreachable': bool(unreachable)}


def run(args: argparse.Namespace) -> dict:
    """Cycle cost (:func:`measure`), tracking accuracy (:func:`accuracy`) and two working-range edges
    (:func:`workspace`): orbit 25 deg with tilts of 20 deg, orbit 30 deg with tilts of 25 deg."""
    result = measure(args.cycles, args.rate)
    result['accuracy'] = accuracy(args.poses)
    result['workspace'] = [workspace(25.0, 20.0, poses=args.workspace_poses),
                           workspace(30.0, 25.0, poses=args.workspace_poses)]
    return result


def summary(result: dict) -> str:
    """The figures for the terminal, one line per world, the budget, the tracking and each edge."""
    lines = []
    for name in ('arm', 'kinematic'):
        r = result[name]
        lines.append(f"{name:9s} cycle: wall mean {r['mean_ms']:.2f} ms, median {r['median_ms']:.2f}, "
                     f"p95 {r['p95_ms']:.2f}, max {r['max_ms']:.2f}; CPU mean {r['cpu_mean_ms']:.2f}, "
                     f"p95 {r['cpu_p95_ms']:.2f}")
    lines.append(f"arm p95 = {100 * result['arm_budget_share_p95']:.1f}% of the {result['budget_ms']:.1f} ms budget; "
                 f"arm / kinematic CPU = {result['arm_over_kinematic_cpu']:.1f}x; a second arm world builds in "
                 f"{result['arm_build_s']:.2f} s")
    acc = result['accuracy']
    lines.append(f"tracking over {acc['poses']} training-range poses: {acc['unreachable']} unreachable; steady state "
                 f"max {acc['max_mm']:.3f} mm / {acc['max_deg']:.4f} deg (median {acc['median_mm']:.3f} mm / "
                 f"{acc['median_deg']:.4f} deg); settles in {acc['settle_s_median']:.2f} s median, "
                 f"{acc['settle_s_max']:.2f} s max")
    for ws in result['workspace']:
        lines.append(f"workspace edge, orbit {ws['orbit_deg']:g} deg + tilts +-{ws['tilt_deg']:g} deg, any turn: "
                     f"{ws['unreachable']}/{ws['poses']} unreachable, joint margin min "
                     f"{ws['min_joint_margin_deg']:.1f} deg (5th percentile {ws['p5_joint_margin_deg']:.1f})")
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python benchmarks/bench_world.py', description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument('--json', metavar='PATH', help='write the figures as JSON here')
    args = parser.parse_args(argv)
    result = run(args)
    print(summary(result))
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(result, f, indent=2)
            f.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
