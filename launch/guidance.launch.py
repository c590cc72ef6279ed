"""Pose and controller nodes for a real scanner feed and a real arm:
``ros2 launch echoposed guidance.launch.py``.

Point the pose node at the scanner's images with ``image_topic:=`` (a remap of ``probe/image``),
place the nodes with ``namespace:=`` and tune them with ``params_file:=`` (docs/graph.md), and
connect ``probe/cmd_twist`` (``geometry_msgs/TwistStamped``, frame ``probe``) to the arm's servo
controller. Arguments and nodes come from ``echoposed_ros.bringup.description`` (shared with
``echoposed launch guidance``).
"""
from echoposed_ros.bringup.ros_launch import generate_for

LAUNCH = 'guidance'


def generate_launch_description():
    return generate_for(LAUNCH)
