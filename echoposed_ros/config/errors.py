"""The one exception type of :mod:`echoposed_ros.config`."""
from __future__ import annotations

from ..errors import EchoposedError

__all__ = ['ConfigError']


class ConfigError(EchoposedError):
    """A parameter or parameter file a node refuses; the message names the parameter (or file)
    with its value and what was expected."""
