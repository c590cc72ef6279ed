"""The launches of echoposed, described once (no ``launch`` / ``rclpy`` import here).

A launch is a list of :class:`Argument` (name, default, description) and a function from the
resolved arguments (strings, as ``name:=value`` gives them) to the :class:`NodeSpec` list it
starts. ``launch/*.launch.py`` turn this into ``DeclareLaunchArgument`` + ``launch_ros`` ``Node``
actions; ``echoposed launch`` turns it into supervised processes.

Every launch places its nodes the same way (:func:`resolve`): ``namespace`` (all nodes under it;
their topics and services are relative, so they follow), ``image_topic`` (a remap of
``probe/image``), and ``params_file`` (one ROS 2 parameter YAML for any of the nodes, checked
against the nodes' parameter tables and applied last: over the shipped ``config/*.yaml`` and over
what launch arguments set).
"""
from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config.params import Param, checked_values, parameter_sections, yaml_parameters
from ..errors import EchoposedError
from ..paths import config_dir

__all__ = ['IMAGE_TOPIC', 'LAUNCHES', 'PARAMETER_TABLES', 'SIM_ARM_SETTLE_TIME', 'Argument', 'LaunchError',
           'LaunchSpec', 'NodeSpec', 'fully_qualified_name', 'node_parameters', 'parameter_table', 'resolve']

IMAGE_TOPIC = 'probe/image'   # the image topic every node uses unless image_topic:= remaps it
#: s, the controller's ``fine_settle_time`` in ``sim_guidance``: the simulated arm has no lag behind its commands
#: (config/controller.yaml keeps a real arm's); a ``params_file`` still overrides it
SIM_ARM_SETTLE_TIME = 0.0

#: Where each node's parameter table lives ('module:attribute'), imported only to check a params_file.
PARAMETER_TABLES = {
    'echoposed_sim': 'echoposed_ros.config.sim:PARAMS',
    'echoposed_pose': 'echoposed_ros.config.pose:PARAMS',
    'echoposed_controller': 'echoposed_ros.nodes.controller_node:PARAMS',
    'echoposed_target': 'echoposed_ros.nodes.target_node:PARAMS',
    'echoposed_recorder': 'echoposed_ros.bag.recorder:PARAMS',
    'echoposed_adapt': 'echoposed_ros.nodes.adapt_node:PARAMS',
}

#: Parameters rclpy declares on every node (a params_file may set them too).
ROS_PARAMETERS = (
    Param('use_sim_time', False, 'the node clock follows /clock'),
    Param('start_type_description_service', True, 'the node offers ~/get_type_description'),
)


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
    parameters: overrides on top of it; remappings: (from, to) topic or service names; namespace:
    the node's namespace ('' = the root; without a leading '/' it is relative to a pushed one);
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
    namespace: str = ''


def fully_qualified_name(spec: NodeSpec) -> str:
    """``/namespace/name`` of the node (its namespace taken from the root)."""
    namespace = spec.namespace.strip('/')
    return f'/{namespace}/{spec.name}' if namespace else f'/{spec.name}'


def node_parameters(spec: NodeSpec) -> dict[str, Any]:
    """Every parameter the launch gives the node: its ``params_file`` section (read now, so an
    edited file takes effect), then ``parameters`` over it. Passed as values rather than as the
    file, since a section keyed by the bare node name does not apply to a node in a namespace."""
    shipped = yaml_parameters(spec.params_file, spec.name) if spec.params_file is not None else {}
    return {**shipped, **spec.parameters}


def parameter_table(node_name: str) -> tuple[Param, ...]:
    """The node's declared parameters (:data:`PARAMETER_TABLES`) and those rclpy adds to every node."""
    module, attribute = PARAMETER_TABLES[node_name].split(':')
    return tuple(getattr(importlib.import_module(module), attribute)) + ROS_PARAMETERS


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
    Argument('params_file', '', 'ROS 2 parameter YAML (node_name: ros__parameters: ...) for any of the nodes '
             '(echoposed_pose, echoposed_controller, ...; /** for all), applied last: over config/*.yaml and '
             'over what other arguments set; a node or parameter that does not exist is an error'),
    Argument('namespace', '', 'namespace of every node; their topics and services are relative, so they follow '
             '(robot1: /robot1/probe/image, ...); empty = none'),
    Argument('image_topic', IMAGE_TOPIC, 'image topic the pose node reads (remap of probe/image, and of '
             'probe/image/compressed to <image_topic>/compressed), e.g. /scanner/image_raw; relative names '
             'follow namespace. In simulation the simulator publishes there and the recorder records it'),
    Argument('model', '', 'ONNX ensemble file; empty = the shipped models/echoposed_k5.onnx'),
    Argument('gain', '1.0', 'proportional gain k/dt of the policy, 1/s (omega = gain * log(error))'),
    Argument('input_transport', 'raw', 'image transport of probe/image', ('raw', 'compressed')),
    Argument('mirror_tta', 'config', "pose node test-time mirroring: 'true', 'false', or 'config' (as "
             'config/pose.yaml says)', ('config', 'true', 'false')),
    Argument('fusion_window', 'config', "pose node cycle fusion over this many seconds with the arm's probe/pose "
             "(docs/estimator.md); 0 = single frames (a hand-held probe, no arm pose); 'config' = as "
             'config/pose.yaml says (1 s)'),
    Argument('record', '', 'record a rosbag2 (MCAP) bag into this new directory (images, true pose, '
             'estimates, commands, status, diagnostics); empty = no recording'),
    Argument('adapt', 'off', "adaptation to this patient (docs/adaptation.md; the fine-tune needs torch): 'off'; "
             "'service': the adapt node serves adapt/run; 'start': it also runs once at start-up (a sweep of "
             'about a minute, guidance paused, then a fine-tune while guidance goes on; the pose node then '
             'takes the adapted model)', ('off', 'service', 'start')),
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


_NAME_TOKEN = r'[A-Za-z_][A-Za-z0-9_]*'
_ROS_NAME = re.compile(rf'/?{_NAME_TOKEN}(/{_NAME_TOKEN})*')


def _ros_name(args: Mapping[str, str], name: str, what: str, example: str) -> str:
    """A namespace or topic name: tokens of letters, digits and '_' (not starting with a digit)
    joined by '/', with or without a leading '/'."""
    value = args[name].strip()
    if not _ROS_NAME.fullmatch(value):
        raise LaunchError(f'{name}:={args[name]!r}; expected a ROS {what} such as {example} '
                          "(letters, digits and '_' between '/', not starting with a digit, no trailing '/')")
    return value


def _image_remaps(args: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Remaps of the raw and compressed image topics to ``image_topic`` (none when it is the default)."""
    topic = _ros_name(args, 'image_topic', 'topic name', '/scanner/image_raw')
    if topic == IMAGE_TOPIC:
        return ()
    return ((IMAGE_TOPIC, topic), (f'{IMAGE_TOPIC}/compressed', f'{topic}/compressed'))


def _pose_node(args: Mapping[str, str]) -> NodeSpec:
    overrides: dict[str, Any] = {'model_path': args['model'], 'input_transport': args['input_transport']}
    if args.get('mirror_tta', 'config') != 'config':
        overrides['mirror_tta'] = args['mirror_tta'] == 'true'
    if args.get('fusion_window', 'config') != 'config':
        window = _float(args, 'fusion_window')
        if not 0 <= window <= 10:
            raise LaunchError(f'fusion_window:={args["fusion_window"]}; expected seconds in [0, 10] or config')
        overrides['fusion_window'] = window
    return NodeSpec('pose_node', 'echoposed_ros.nodes.pose_node', 'echoposed_pose', config_dir() / 'pose.yaml',
                    overrides, _image_remaps(args))


def _controller_node(args: Mapping[str, str], parameters: Mapping[str, Any] | None = None,
                     remappings: tuple[tuple[str, str], ...] = ()) -> NodeSpec:
    gain = _float(args, 'gain')
    if not 0 < gain <= 20:
        raise LaunchError(f'gain:={gain}; expected 0 < gain <= 20 (1/s)')
    return NodeSpec('controller_node', 'echoposed_ros.nodes.controller_node', 'echoposed_controller',
                    config_dir() / 'controller.yaml', {'gain': gain, **(parameters or {})},
                    remappings + _image_remaps(args)[:1])   # it scores raw frames against an image target


def _recorder(args: Mapping[str, str], target_view: str = '') -> list[NodeSpec]:
    """The bag recorder (``echoposed_ros.bag.recorder``) when ``record:=PATH`` is set, else nothing."""
    if not args['record'].strip():
        return []
    path = Path(args['record'].strip()).expanduser().absolute()
    if path.exists():
        raise LaunchError(f'record:={args["record"]!r}; {path} exists already (expected a new bag directory)')
    return [NodeSpec('bag_recorder', 'echoposed_ros.bag.recorder', 'echoposed_recorder', None,
                     {'output': str(path), 'target_view': target_view}, _image_remaps(args), stop_first=True)]


def _adapt(args: Mapping[str, str]) -> list[NodeSpec]:
    """The adapt node when ``adapt:=service`` or ``adapt:=start``, adapting the launch's model."""
    if args['adapt'] == 'off':
        return []
    return [NodeSpec('adapt_node', 'echoposed_ros.nodes.adapt_node', 'echoposed_adapt', config_dir() / 'adapt.yaml',
                     {'autostart': args['adapt'] == 'start', 'model_path': args['model']}, _image_remaps(args)[:1])]


def _guidance_nodes(args: Mapping[str, str]) -> list[NodeSpec]:
    return [_pose_node(args), _controller_node(args)] + _adapt(args) + _recorder(args)


def _sim_guidance_nodes(args: Mapping[str, str]) -> list[NodeSpec]:
    sim = NodeSpec('sim_node', 'echoposed_ros.nodes.sim_node', 'echoposed_sim', config_dir() / 'sim.yaml', {
        'volume': args['volume'],
        'phantom_seed': _int(args, 'seed'),
        'style': args['style'],
        'robot': args['robot'] != 'kinematic',
        'cardiac_motion': _bool(args, 'cardiac_motion'),
        'start_seed': _int(args, 'start_seed'),
        'command_source': args['command_source'],
    }, _image_remaps(args))
    oracle = args['estimator'] == 'oracle'
    target = NodeSpec('target_node', 'echoposed_ros.nodes.target_node', 'echoposed_target',
                      config_dir() / 'target.yaml', {'view': args['target'], 'kind': 'pose' if oracle else 'image'},
                      one_shot=True)
    recorder = _recorder(args, target_view=args['target'])
    # the simulated arm (kinematic or PyBullet) moves within the frame that follows a command: no lag to wait out
    arm = {'fine_settle_time': SIM_ARM_SETTLE_TIME}
    if oracle:  # the controller reads the simulator's ground truth instead of estimates
        return [sim, _controller_node(args, arm, remappings=(('echoposed/pose', 'probe/true_pose'),)),
                target] + recorder
    return [sim, _pose_node(args), _controller_node(args, arm), target] + _adapt(args) + recorder


LAUNCHES: dict[str, LaunchSpec] = {
    'guidance': LaunchSpec('guidance', 'pose and controller nodes, for a real scanner feed and a real arm',
                           GUIDANCE_ARGUMENTS, _guidance_nodes),
    'sim_guidance': LaunchSpec('sim_guidance', 'the whole guidance loop in simulation: sim, pose, '
                               'controller and a one-shot target setter', SIM_GUIDANCE_ARGUMENTS,
                               _sim_guidance_nodes),
}


def _user_parameters(path_arg: str, nodes: list[NodeSpec], namespace: str) -> dict[str, dict[str, Any]]:
    """{node name: parameters} the ``params_file`` gives each node of the launch.

    A section is keyed by a node name (``echoposed_pose``, ``/echoposed_pose``, ``/**/echoposed_pose``,
    or with the launch's namespace, ``/robot1/echoposed_pose``), or is ``/**`` (applied to every node
    that declares the parameter, under the nodes' own sections). A section of an echoposed node that
    this launch does not start is checked and left unused. An unknown node, a parameter the node does
    not declare, or a value of another type than the parameter's is a LaunchError naming it.
    """
    path = Path(path_arg).expanduser()
    if not path.is_file():
        raise LaunchError(f'params_file:={path_arg!r}; no such file (expected a ROS 2 parameter YAML)')
    try:
        sections = parameter_sections(path)
        namespace = namespace.strip('/')
        aliases = {}
        for name in PARAMETER_TABLES:
            keys = [name, f'/{name}', f'/**/{name}'] + ([f'{namespace}/{name}', f'/{namespace}/{name}']
                                                        if namespace else [])
            aliases.update(dict.fromkeys(keys, name))
        given: dict[str, dict[str, Any]] = {name: {} for name in PARAMETER_TABLES}
        for key, values in sections.items():
            if key == '/**':
                continue
            if key not in aliases:
                within = f', /{namespace}/NAME' if namespace else ''
                raise LaunchError(f'{path}: no node {key!r} in echoposed (expected NAME, /NAME, /**/NAME{within} '
                                  f'with NAME one of {", ".join(sorted(PARAMETER_TABLES))}; or /** for every node)')
            name = aliases[key]
            given[name].update(checked_values(parameter_table(name), values, f'{path}: {name}'))
        launched = {n.name: parameter_table(n.name) for n in nodes if n.name in PARAMETER_TABLES}
        everywhere: dict[str, dict[str, Any]] = {name: {} for name in launched}
        for key, value in sections.get('/**', {}).items():
            takers = [name for name, table in launched.items() if any(p.name == key for p in table)]
            if not takers:
                raise LaunchError(f'{path}: /** sets {key!r}, which no node of this launch declares '
                                  f'({", ".join(sorted(launched))})')
            for name in takers:
                everywhere[name].update(checked_values(launched[name], {key: value}, f'{path}: /** ({name})'))
    except EchoposedError as exc:
        raise LaunchError(str(exc)) from None
    return {name: {**everywhere[name], **given[name]} for name in launched}


def resolve(launch: str, given: Mapping[str, str]) -> tuple[dict[str, str], list[NodeSpec]]:
    """Arguments (defaults filled in, names and choices checked) and the nodes they start, placed
    in ``namespace`` with the ``params_file`` values (checked) over their parameters."""
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
    nodes = spec.nodes(args)
    namespace = args['namespace'].strip() and _ros_name(args, 'namespace', 'namespace', 'robot1 or /fleet/robot1')
    user = _user_parameters(args['params_file'], nodes, namespace) if args['params_file'].strip() else {}
    return args, [replace(n, namespace=namespace, parameters={**n.parameters, **user.get(n.name, {})})
                  for n in nodes]
