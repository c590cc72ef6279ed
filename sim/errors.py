"""The simulator's own error type (:class:`SimError`); the slicer, volumes and sectors have theirs."""
from __future__ import annotations

from echoposed_ros.errors import EchoposedError

__all__ = ['SimError']


class SimError(EchoposedError):
    """A command, request or sampling range the simulator refuses (the message says what and why)."""
