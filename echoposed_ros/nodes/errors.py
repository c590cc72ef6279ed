"""The one exception type of :mod:`echoposed_ros.nodes` (a bad parameter is a
:class:`~echoposed_ros.config.errors.ConfigError`)."""
from __future__ import annotations

from ..errors import EchoposedError

__all__ = ['NodeError']


class NodeError(EchoposedError):
    """A request a node refuses, or a service it cannot get an answer from; the message names the
    request field (or service) with its value and what was expected."""
