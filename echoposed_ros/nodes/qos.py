"""QoS profiles the nodes share."""
from __future__ import annotations

from rclpy.qos import HistoryPolicy, QoSProfile, qos_profile_sensor_data

__all__ = ['NEWEST_FRAME']

#: Image subscriptions: sensor-data reliability and durability (best effort, volatile), and only the newest
#: frame kept, so a slow reader works on the latest image instead of a backlog.
NEWEST_FRAME = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=qos_profile_sensor_data.reliability,
                          durability=qos_profile_sensor_data.durability)
