"""Rosbag2 record, replay and offline scoring of echoposed sessions (rosbags library, MCAP storage).

- ``errors``: :class:`BagError` (a ValueError), the one exception of this subpackage
- ``typestore``: rosbags typestore with ``echoposed_msgs`` registered from its ``.msg`` files
- ``writer``: :class:`BagWriter` (serialized messages -> MCAP bag with metadata.yaml; no rclpy)
- ``integrity``: MCAP framing and CRC-32 checks run before a bag is read (damage -> one BagError)
- ``reader``: :func:`read_bag` (images, ground truth, estimates, commands, status -> arrays)
- ``clip``: :func:`read_clip` (a saved view: the frames of a bag between two times, a target cine)
- ``salvage``: :func:`salvage` (complete messages of a truncated or damaged MCAP, and its custom_data
  -> a new, complete bag)
- ``evaluate``: the pure scoring core (alignment, tracking error, sigma^2 vs error, latency, target)
- ``plots``: pictures of an evaluation (matplotlib, Agg)
- ``recorder`` / ``player``: rclpy nodes (import them explicitly; this package does not import rclpy)
"""
from __future__ import annotations

from .errors import BagError

__all__ = ['BagError']
