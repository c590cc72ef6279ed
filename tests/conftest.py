"""Test-wide settings.

DDS isolation: every test process talks on a ROS domain reserved for it (``echoposed_ros/bringup/domain.py``: a lock
file held for the life of the process) with localhost-only discovery, so concurrent runs of the
suite on one machine (and anything else that reserves its domain the same way) never hear each
other. This runs at import time, before any test can initialise rclpy, and child processes started
by tests inherit the environment.
"""
from __future__ import annotations

import os

from echoposed_ros.bringup.domain import reserve_domain

# Held (its lock file open) until the pytest process ends; with every id taken, DomainError names the
# lock files and the run stops before any test.
DOMAIN = reserve_domain()
os.environ['ROS_DOMAIN_ID'] = str(DOMAIN.domain_id)
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.pop('ROS_STATIC_PEERS', None)
os.environ.pop('ROS_LOCALHOST_ONLY', None)  # deprecated in favour of the discovery range
os.environ.setdefault('MPLBACKEND', 'Agg')
