"""The one exception type of :mod:`echoposed_ros.nodes`."""
from __future__ import annotations

from ..errors import EchoposedError

__all__ = ['NodeError']


class NodeError(EchoposedError):
    """A parameter, parameter file or request a node refuses; the message names the parameter (or
    file, or field) with its value and what was expected."""
