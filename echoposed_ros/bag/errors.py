"""The one exception type of :mod:`echoposed_ros.bag`."""
from __future__ import annotations

from ..errors import EchoposedError

__all__ = ['BagError']


class BagError(EchoposedError):
    """A bag that cannot be recorded, read or scored; the message names the bag and the problem."""
