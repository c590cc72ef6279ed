"""The launch arguments that place the graph on a robot (``echoposed_ros.bringup.description``):
``namespace``, ``image_topic`` (a remap) and ``params_file`` (checked against the nodes' parameter
tables, applied last); and the command line ``echoposed launch`` builds from them, as rclpy reads it."""
from __future__ import annotations

import textwrap

import pytest
import yaml

from echoposed_ros.bringup.description import (
    SIM_ARM_SETTLE_TIME,
    LaunchError,
    fully_qualified_name,
    node_parameters,
    resolve,
)
from echoposed_ros.bringup.launcher import command_for
from echoposed_ros.paths import config_dir

SIM = {'estimator': 'oracle'}   # sim, controller and target: no model needed to resolve


def nodes_of(launch: str, **given: str) -> dict:
    _, nodes = resolve(launch, given)
    return {n.name: n for n in nodes}


def params_file(tmp_path, text: str):
    path = tmp_path / 'robot.yaml'
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_by_default_nodes_are_at_the_root_with_no_remaps():
    for node in nodes_of('sim_guidance', record='').values():
        assert node.namespace == '' and node.remappings in ((), (('echoposed/pose', 'probe/true_pose'),))
        assert fully_qualified_name(node) == f'/{node.name}'


def test_namespace_places_every_node_and_image_topic_remaps_the_image_users(tmp_path):
    nodes = nodes_of('sim_guidance', namespace='robot1', image_topic='/scanner/image_raw',
                     record=str(tmp_path / 'bag'))
    assert set(nodes) == {'echoposed_sim', 'echoposed_pose', 'echoposed_controller', 'echoposed_target',
                          'echoposed_recorder'}
    assert {n.namespace for n in nodes.values()} == {'robot1'}
    assert fully_qualified_name(nodes['echoposed_pose']) == '/robot1/echoposed_pose'
    remaps = (('probe/image', '/scanner/image_raw'), ('probe/image/compressed', '/scanner/image_raw/compressed'))
    for name in ('echoposed_sim', 'echoposed_pose', 'echoposed_recorder'):   # publisher, reader, recorder
        assert nodes[name].remappings == remaps, name
    # the controller scores raw frames against an image target (fine alignment): the raw topic only
    assert nodes['echoposed_controller'].remappings == remaps[:1] and nodes['echoposed_target'].remappings == ()
    guidance = nodes_of('guidance', image_topic='scanner/image')
    assert guidance['echoposed_pose'].remappings[0] == ('probe/image', 'scanner/image')


@pytest.mark.parametrize('given, match', [
    ({'namespace': 'robot 1'}, "namespace:='robot 1'; expected a ROS namespace"),
    ({'namespace': '/robot1/'}, "namespace:='/robot1/'"),
    ({'namespace': '1robot'}, "namespace:='1robot'"),
    ({'image_topic': ''}, "image_topic:=''; expected a ROS topic name"),
    ({'image_topic': 'scanner//image'}, "image_topic:='scanner//image'"),
])
def test_a_bad_namespace_or_image_topic_is_named(given, match):
    with pytest.raises(LaunchError, match=match):
        resolve('guidance', given)


def test_params_file_values_win_over_the_config_yaml_and_the_launch_arguments(tmp_path):
    path = params_file(tmp_path, """
        echoposed_controller:
          ros__parameters:
            gain: 2.5
            max_orbit_speed: 0.1
        /robot1/echoposed_sim:
          ros__parameters:
            command_timeout: 0.3
        /**/echoposed_target:
          ros__parameters:
            timeout: 30.0
        echoposed_pose:            # not started with estimator:=oracle: checked, unused
          ros__parameters:
            mirror_tta: false
        /**:
          ros__parameters:
            use_sim_time: false
            diagnostics_period: 0.5
    """)
    nodes = nodes_of('sim_guidance', **SIM, gain='3.0', namespace='robot1', params_file=path)
    controller = node_parameters(nodes['echoposed_controller'])
    shipped = yaml.safe_load((config_dir() / 'controller.yaml').read_text())['echoposed_controller']['ros__parameters']
    assert controller['gain'] == 2.5                      # over gain:=3.0
    assert controller['max_orbit_speed'] == 0.1 != shipped['max_orbit_speed']
    assert controller['max_probe_speed'] == shipped['max_probe_speed']   # the rest as shipped
    assert controller['diagnostics_period'] == 0.5 and controller['use_sim_time'] is False   # from /**
    assert node_parameters(nodes['echoposed_sim'])['command_timeout'] == 0.3
    assert node_parameters(nodes['echoposed_sim'])['robot'] is True       # set by the launch, not the file
    assert node_parameters(nodes['echoposed_target'])['timeout'] == 30.0
    assert 'diagnostics_period' not in node_parameters(nodes['echoposed_target'])   # it declares none


def test_sim_guidance_waits_no_arm_lag_in_the_fine_search_unless_the_params_file_says(tmp_path):
    shipped = yaml.safe_load((config_dir() / 'controller.yaml').read_text())['echoposed_controller']['ros__parameters']
    assert shipped['fine_settle_time'] > 0 == SIM_ARM_SETTLE_TIME    # a real arm's lag in the shipped config
    for estimator in ('model', 'oracle'):
        nodes = nodes_of('sim_guidance', estimator=estimator)
        controller = node_parameters(nodes['echoposed_controller'])
        assert controller['fine_settle_time'] == SIM_ARM_SETTLE_TIME
    guidance = node_parameters(nodes_of('guidance')['echoposed_controller'])
    assert guidance['fine_settle_time'] == shipped['fine_settle_time']    # a real arm: the shipped value
    path = params_file(tmp_path, 'echoposed_controller:\n  ros__parameters:\n    fine_settle_time: 0.08\n')
    controller = node_parameters(nodes_of('sim_guidance', **SIM, params_file=path)['echoposed_controller'])
    assert controller['fine_settle_time'] == 0.08


@pytest.mark.parametrize('text, match', [
    ('echoposed_controler:\n  ros__parameters:\n    gain: 2.0\n',
     "no node 'echoposed_controler' in echoposed"),
    ('echoposed_controller:\n  ros__parameters:\n    gian: 2.0\n',
     "echoposed_controller has no parameter 'gian'"),
    ('echoposed_controller:\n  ros__parameters:\n    gain: 2\n',
     r'echoposed_controller.gain = 2; expected a float'),
    ('/robot2/echoposed_sim:\n  ros__parameters:\n    command_timeout: 0.3\n',
     "no node '/robot2/echoposed_sim'"),
    ('/**:\n  ros__parameters:\n    model_path: x\n',   # the pose node is not started (oracle)
     "/\\*\\* sets 'model_path', which no node of this launch declares"),
    ('echoposed_controller:\n  gain: 2.0\n', "section 'echoposed_controller' is not a ros__parameters mapping"),
    ('just text\n', 'no node sections'),
])
def test_a_bad_params_file_names_the_file_and_what_is_wrong(tmp_path, text, match):
    path = params_file(tmp_path, text)
    with pytest.raises(LaunchError, match=match) as info:
        resolve('sim_guidance', {**SIM, 'namespace': 'robot1', 'params_file': path})
    assert path in str(info.value)


def test_a_missing_params_file_is_named(tmp_path):
    with pytest.raises(LaunchError, match="params_file:='.*none.yaml'; no such file"):
        resolve('guidance', {'params_file': str(tmp_path / 'none.yaml')})


def test_the_command_line_puts_the_node_in_its_namespace_with_all_its_parameters(tmp_path):
    path = params_file(tmp_path, """
        echoposed_sim:
          ros__parameters:
            command_timeout: 0.3
    """)
    nodes = nodes_of('sim_guidance', **SIM, namespace='robot1', image_topic='scanner/image', params_file=path)
    cmd = command_for(nodes['echoposed_sim'], tmp_path)
    assert cmd[cmd.index('--ros-args'):cmd.index('--params-file')] == [
        '--ros-args', '-r', '__node:=echoposed_sim', '-r', '__ns:=/robot1', '-r', 'probe/image:=scanner/image',
        '-r', 'probe/image/compressed:=scanner/image/compressed']
    written = yaml.safe_load(open(cmd[cmd.index('--params-file') + 1]))
    assert list(written) == ['/robot1/echoposed_sim']   # a bare node name would not apply in a namespace
    values = written['/robot1/echoposed_sim']['ros__parameters']
    shipped = yaml.safe_load((config_dir() / 'sim.yaml').read_text())['echoposed_sim']['ros__parameters']
    assert values == {**shipped, **nodes['echoposed_sim'].parameters} and values['command_timeout'] == 0.3


def test_rclpy_reads_the_generated_command_line_as_meant(tmp_path):
    """The node the command line builds: its full name, its parameters and its remapped topic."""
    import rclpy
    from rclpy.node import Node

    path = params_file(tmp_path, 'echoposed_sim:\n  ros__parameters:\n    command_timeout: 0.3\n')
    nodes = nodes_of('sim_guidance', **SIM, namespace='robot1', image_topic='scanner/image', params_file=path)
    cmd = command_for(nodes['echoposed_sim'], tmp_path)
    context = rclpy.Context()
    rclpy.init(args=['node', *cmd[cmd.index('--ros-args'):]], context=context)
    try:
        node = Node('placeholder', context=context, automatically_declare_parameters_from_overrides=True)
        assert node.get_fully_qualified_name() == '/robot1/echoposed_sim'
        assert node.get_parameter('command_timeout').value == 0.3
        assert node.get_parameter('robot').value is True
        assert node.resolve_topic_name('probe/image') == '/robot1/scanner/image'
        assert node.resolve_topic_name('probe/true_pose') == '/robot1/probe/true_pose'
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_the_launch_files_pass_the_same_placement_to_launch_ros(tmp_path, monkeypatch):
    """launch/*.launch.py through ros_launch.generate_for, with launch and launch_ros stood in for
    (they are not installed here): each Node gets the namespace, remaps and every parameter as values."""
    import importlib
    import sys
    import types

    class Recorded:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    class Configuration(Recorded):
        def perform(self, context):
            return context[self.args[0]]

    stubs = {'launch': types.ModuleType('launch'), 'launch.actions': types.ModuleType('launch.actions'),
             'launch.substitutions': types.ModuleType('launch.substitutions'),
             'launch_ros': types.ModuleType('launch_ros'), 'launch_ros.actions': types.ModuleType('launch_ros.actions')}
    stubs['launch'].LaunchDescription = lambda actions: actions
    stubs['launch.actions'].DeclareLaunchArgument = Recorded
    stubs['launch.actions'].OpaqueFunction = lambda function: function
    stubs['launch.substitutions'].LaunchConfiguration = Configuration
    stubs['launch_ros.actions'].Node = Recorded
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, 'echoposed_ros.bringup.ros_launch', raising=False)
    ros_launch = importlib.import_module('echoposed_ros.bringup.ros_launch')

    *declared, nodes = ros_launch.generate_for('sim_guidance')
    context = {a.args[0]: a.kwargs['default_value'] for a in declared}
    assert {'params_file', 'namespace', 'image_topic'} <= set(context)
    path = params_file(tmp_path, 'echoposed_controller:\n  ros__parameters:\n    max_orbit_speed: 0.1\n')
    context.update(estimator='oracle', namespace='robot1', image_topic='scanner/image', params_file=path)
    actions = {n.kwargs['name']: n.kwargs for n in nodes(context)}
    controller = actions['echoposed_controller']
    assert controller['namespace'] == 'robot1' and controller['parameters'][0]['max_orbit_speed'] == 0.1
    assert controller['parameters'][0]['gain'] == 1.0 and len(controller['parameters']) == 1
    assert ('probe/image', 'scanner/image') in actions['echoposed_sim']['remappings']
    context.update(namespace='')
    assert {n.kwargs['namespace'] for n in nodes(context)} == {None}   # a pushed namespace still applies
    monkeypatch.delitem(sys.modules, 'echoposed_ros.bringup.ros_launch')


def test_adapt_adds_the_adapt_node_serving_or_starting_with_the_launch_model():
    assert 'echoposed_adapt' not in nodes_of('guidance')
    served = nodes_of('guidance', adapt='service', model='/m/model.onnx', image_topic='/scanner/image_raw')
    node = served['echoposed_adapt']
    assert node.parameters == {'autostart': False, 'model_path': '/m/model.onnx'}
    assert node.remappings == (('probe/image', '/scanner/image_raw'),)
    assert 'echoposed_adapt' not in nodes_of('sim_guidance', adapt='start', **SIM)   # oracle: no model to adapt
    started = nodes_of('sim_guidance', adapt='start')['echoposed_adapt']
    assert started.parameters['autostart'] is True and started.params_file == config_dir() / 'adapt.yaml'
    with pytest.raises(LaunchError, match='adapt'):
        resolve('guidance', {'adapt': 'yes'})


def test_fusion_window_argument_sets_the_pose_nodes_cycle_fusion():
    assert 'fusion_window' not in nodes_of('guidance')['echoposed_pose'].parameters   # config/pose.yaml's
    assert nodes_of('guidance', fusion_window='0')['echoposed_pose'].parameters['fusion_window'] == 0.0
    assert nodes_of('sim_guidance', estimator='model', fusion_window='0.5')['echoposed_pose'].parameters[
        'fusion_window'] == 0.5
    for bad in ('-1', 'soon', '60'):
        with pytest.raises(LaunchError, match='fusion_window:='):
            resolve('guidance', {'fusion_window': bad})
