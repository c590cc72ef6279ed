"""launch_ros actions from the shared description (imported only by ``launch/*.launch.py``)."""
from __future__ import annotations

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

from .description import LAUNCHES, node_parameters, resolve

__all__ = ['generate_for']


def generate_for(launch: str) -> LaunchDescription:
    spec = LAUNCHES[launch]

    def nodes(context):
        given = {a.name: LaunchConfiguration(a.name).perform(context) for a in spec.arguments}
        _, node_specs = resolve(launch, given)
        # parameters as values (launch_ros hands them to the node under /**): a config file section
        # keyed by the bare node name would not apply to a node in a namespace
        return [Node(package='echoposed', executable=n.executable, name=n.name, output='screen',
                     namespace=n.namespace or None, remappings=list(n.remappings),
                     parameters=[node_parameters(n)])
                for n in node_specs]

    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      **({'choices': list(a.choices)} if a.choices else {}))
                for a in spec.arguments]
    return LaunchDescription([*declared, OpaqueFunction(function=nodes)])
