"""The one exception type of :mod:`echoposed_ros.cli`."""
from __future__ import annotations

from ..errors import EchoposedError

__all__ = ['UsageError']


class UsageError(EchoposedError):
    """A command-line argument that cannot be used; the message names the option, its value and
    what was expected."""
