"""Bringing the graph up: one description of each launch, read by the launch files in
``launch/`` (launch_ros, on a ROS 2 install) and by ``echoposed launch`` (this machine, no
``ros2 launch``), so the two can never drift.

- ``description``: launch arguments and the nodes (executable, name, parameters) they start
- ``launcher``: start, supervise and stop those nodes as processes
- ``monitor``: a node that watches a run and writes its summary
- ``series``: bounded records of message streams (the monitor's memory stays flat on long runs)
"""
from .description import LAUNCHES, Argument, LaunchSpec, NodeSpec, resolve

__all__ = ['LAUNCHES', 'Argument', 'LaunchSpec', 'NodeSpec', 'resolve']
