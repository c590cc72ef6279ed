"""The whole guidance loop in simulation: ``ros2 launch echoposed sim_guidance.launch.py``.

Arguments and nodes come from ``echoposed_ros.bringup.description`` (shared with
``echoposed launch sim_guidance`` on machines without ``ros2 launch``); list them with
``ros2 launch echoposed sim_guidance.launch.py --show-args``.
"""
from echoposed_ros.bringup.ros_launch import generate_for

LAUNCH = 'sim_guidance'


def generate_launch_description():
    return generate_for(LAUNCH)
