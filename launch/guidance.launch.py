"""Pose and controller nodes for a real scanner feed and a real arm:
``ros2 launch echoposed guidance.launch.py``.

Remap ``probe/image`` to the scanner's image topic and connect ``probe/cmd_twist``
(``geometry_msgs/TwistStamped``, frame ``probe``) to the arm's servo controller. Arguments and
nodes come from ``echoposed_ros.bringup.description`` (shared with ``echoposed launch guidance``).
"""
from echoposed_ros.bringup.ros_launch import generate_for

LAUNCH = 'guidance'


def generate_launch_description():
    return generate_for(LAUNCH)
