"""Test-wide settings.

DDS isolation: every test process talks on its own ROS domain with localhost-only discovery, so
repeated or parallel runs of the suite (and anything else on the machine) never hear each other.
This runs at import time, before any test can initialise rclpy, and child processes started by
tests inherit it.
"""
from __future__ import annotations

import os
import random

# Domain ids 1..101 are safe on Linux with the default port mapping (each maps to its own ports).
os.environ['ROS_DOMAIN_ID'] = str(random.SystemRandom().randint(1, 101))
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.pop('ROS_STATIC_PEERS', None)
os.environ.pop('ROS_LOCALHOST_ONLY', None)  # deprecated in favour of the discovery range
os.environ.setdefault('MPLBACKEND', 'Agg')
