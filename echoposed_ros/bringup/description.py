"""The launches of echoposed, described once (no ``launch`` / ``rclpy`` import here).

A launch is a list of :class:`Argument` (name, default, description) and a function from the
resolved arguments (strings, as ``name:=value`` gives them) to the :class:`NodeSpec` list it
starts. ``launch/*.launch.py`` turn this into ``DeclareLaunchArgument`` + ``launch_ros`` ``Node``
actions; ``echoposed launch`` turns it into supervised processes.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EchoposedError
from ..paths import config_dir

__all__ = ['LAUNCHES', 'Argument', 'LaunchError', 'LaunchSpec', 'NodeSpec', 'resolve']


class LaunchError(EchoposedError):
    """A launch argument that cannot be used; the message names it and what was expected."""


@dataclass(frozen=True)
class Argument:
    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeSpec:
    """One node of a launch.

    executable: console script (``ros2 run echoposed <executable>``); module: the Python module
    whose ``main()`` it runs; name: the node name; params_file: the node's YAML in ``config/``;
    parameters: overrides on top of it; remappings: (from, to) topic or service names;
    one_shot: the process is expected to finish (exit 0, or -SIGALRM: its teardown alarm after its
    work); stop_first: when the launch ends this node is stopped (and waited for) before the
    others, e.g. the recorder, so that a bag ends with the run and not with the other nodes'
    shutdown.
    """

    executable: str
    module: str
    name: str
    params_file: Path | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    one_shot: bool = False
    stop_first: bool = False


@dataclass(frozen=True)
class LaunchSpec:
    name: str
    description: str
    arguments: tuple[Argument, ...]
    nodes: Callable[[Mapping[str, str]], list[NodeSpec]]


def _bool(args: Mapping[str, str], name: str) -> bool:
    value = args[name].strip().lower()
    if value in ('true', '1', 'yes', 'on'):
        return True
    if value in ('false', '0', 'no', 'off'):
        return False
    raise LaunchError(f'{name}:={args[name]!r}; expected true or false')


def _float(args: Mapping[str, str], name: str) -> float:
    try:
        return float(args[name])
    except ValueError:
        raise LaunchError(f'{name}:={args[name]!r}; expected a number') from None


def _int(args: Mapping[str, str], name: str) -> int:
    try:
        return int(args[name])
    except ValueError:
        raise LaunchError(f'{name}:={args[name]!r}; expected an integer') from None


GUIDANCE_ARGUMENTS = (
    Argument('model', '', 'ONNX ensemble file; empty = the shipped models/echoposed_k5.onnx'),
    Argument('gain', '1.0', 'proportional gain k/dt of the policy, 1/s (omega = gain * log(error))'),
    Argument('input_transport', 'raw', 'image transport of probe/image', ('raw', 'compressed')),
    Argument('mirror_tta', 'config', "pose node test-time mirroring: 'true', 'false', or 'config' (as "
             'config/pose.yaml says)', ('config', 'true', 'false')),
    Argument('record', '', 'record a rosbag2 (MCAP) bag into this new directory (images, true pose, '
             'estimates, commands, status, diagnostics); empty = no recording'),
)

SIM_GUIDANCE_ARGUMENTS = GUIDANCE_ARGUMENTS + (
    Argument('volume', '', 'volume file (.nii, .nii.gz, .mha, .mhd, .npz, .npy); empty = phantom'),
    Argument('seed', '1000', 'phantom patient seed (ignored with volume:=FILE)'),
    Argument('style', '', 'acquisition style YAML for the phantom; empty = the default style'),
    Argument('target', 'A4C', 'target standard view', ('A4C', 'A2C', 'A3C')),
    Argument('robot', 'arm', "'arm': PyBullet arm holds the probe; 'kinematic': no arm", ('arm', 'kinematic')),
    Argument('cardiac_motion', 'true', 'the heart beats (true) or stays at end-diastole (false)'),
    Argument('start_seed', '0', 'seed of the random start pose'),
    Argument('estimator', 'model', "'model': the pose node estimates poses from the images; 'oracle': "
             'the controller is fed the simulator ground truth (checks the loop without the model)',
             ('model', 'oracle')),
    Argument('command_source', 'body', "what drives the simulated probe: 'body' (probe/cmd) or "
             "'cartesian' (probe/cmd_twist, as a robot servo takes it)", ('body', 'cartesian')),
)


def _pose_node(args: Mapping[str, str]) -> NodeSpec:
    overrides: dict[str, Any] = {'model_path': args['model'], 'input_transport': args['input_transport']}
    if args.get('mirror_tta', 'config') != 'config':
        overrides['mirror_tta'] = args['mirror_tta'] == 'true'
    return NodeSpec('pose_node', 'echoposed_ros.nodes.pose_node', 'echoposed_pose', config_dir() / 'pose.yaml',
                    overrides)


def _controller_node(args: Mapping[str, str], parameters: Mapping[str, Any] | None = None,
                     remappings: tuple[tuple[str, str], ...] = ()) -> NodeSpec:
    gain = _float(args, 'gain')
    if not 0 < gain <= 20:
        raise LaunchError(f'gain:={gain}; expected 0 < gain <= 20 (1/s)')
    return NodeSpec('controller_node', 'echoposed_ros.nodes.controller_node', 'echoposed_controller',
                    config_dir() / 'controller.yaml', {'gain': gain, **(parameters or {})}, remappings)


def _recorder(args: Mapping[str, str], target_view: str = '') -> list[NodeSpec]:
    """The bag recorder (``echoposed_ros.bag.recorder``) when ``record:=PATH`` is set, else nothing."""
    if not args['record'].strip():
        return []
    path = Path(args['record'].strip()).expanduser().absolute()
    if path.exists():
        raise LaunchError(f'record:={args["record"]!r}; {path} exists already (expected a new bag directory)')
    return [NodeSpec('bag_recorder', 'echoposed_ros.bag.recorder', 'echoposed_recorder', None,
                     {'output': str(path), 'target_view': target_view}, stop_first=True)]


def _guidance_nodes(args: Mapping[str, str]) -> list[NodeSpec]:
    return [_pose_node(args), _controller_node(args)] + _recorder(args)


def _sim_guidance_nodes(args: Mapping[str, str]) -> list[NodeSpec]:
    sim = NodeSpec('sim_node', 'echoposed_ros.nodes.sim_node', 'echoposed_sim', config_dir() / 'sim.yaml', {
        'volume': args['volume'],
        'phantom_seed': _int(args, 'seed'),
        'style': args['style'],
        'robot': args['robot'] != 'kinematic',
        'cardiac_motion': _bool(args, 'cardiac_motion'),
        'start_seed': _int(args, 'start_seed'),
        'command_source': args['command_source'],
    })
    oracle = args['estimator'] == 'oracle'
    target = NodeSpec('target_node', 'echoposed_ros.nodes.target_node', 'echoposed_target',
                      config_dir() / 'target.yaml', {'view': args['target'], 'kind': 'pose' if oracle else 'image'},
                      one_shot=True)
    recorder = _recorder(args, target_view=args['target'])
    if oracle:  # the controller reads the simulator's ground truth instead of estimates
        return [sim, _controller_node(args, remappings=(('echoposed/pose', 'probe/true_pose'),)), target] + recorder
    return [sim, _pose_node(args), _controller_node(args), target] + recorder


LAUNCHES: dict[str, LaunchSpec] = {
    'guidance': LaunchSpec('guidance', 'pose and controller nodes, for a real scanner feed and a real arm',
                           GUIDANCE_ARGUMENTS, _guidance_nodes),
    'sim_guidance': LaunchSpec('sim_guidance', 'the whole guidance loop in simulation: sim, pose, '
                               'controller and a one-shot target setter', SIM_GUIDANCE_ARGUMENTS,
                               _sim_guidance_nodes),
}


def resolve(launch: str, given: Mapping[str, str]) -> tuple[dict[str, str], list[NodeSpec]]:
    """Arguments (defaults filled in, names and choices checked) and the nodes they start."""
    if launch not in LAUNCHES:
        raise LaunchError(f'unknown launch {launch!r}; expected one of {", ".join(sorted(LAUNCHES))}')
    spec = LAUNCHES[launch]
    known = {a.name: a for a in spec.arguments}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise LaunchError(f'{launch}: unknown argument(s) {", ".join(unknown)}; '
                          f'expected some of {", ".join(sorted(known))}')
    args = {name: str(given.get(name, a.default)) for name, a in known.items()}
    for name, a in known.items():
        if a.choices and args[name] not in a.choices:
            raise LaunchError(f'{name}:={args[name]!r}; expected one of {", ".join(a.choices)}')
    return args, spec.nodes(args)
