"""Tiny bags for tests: real MCAP files written with the project's own writer."""
from __future__ import annotations

import numpy as np

from echoposed_ros.bag.typestore import typestore
from echoposed_ros.bag.writer import BagWriter

T0 = 1_700_000_000_000_000_000  # ns


def write_image_bag(path, n: int, size: int = 8):
    """n mono8 frames on /probe/image at 30 Hz (frame i at T0 + i / 30 s exactly), frame i filled with value i."""
    ts = typestore().types
    w = BagWriter(path)
    w.add_topic('/probe/image', 'sensor_msgs/msg/Image')
    for i in range(n):
        t = T0 + i * 10**9 // 30
        header = ts['std_msgs/msg/Header'](stamp=ts['builtin_interfaces/msg/Time'](sec=t // 10**9, nanosec=t % 10**9),
                                           frame_id='probe')
        w.write_message('/probe/image', t, ts['sensor_msgs/msg/Image'](
            header=header, height=size, width=size, encoding='mono8', is_bigendian=0, step=size,
            data=np.full(size * size, i, np.uint8)))
    w.close()
    return path
