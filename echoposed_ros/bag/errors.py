"""The one exception type of :mod:`echoposed_ros.bag`."""
from __future__ import annotations

__all__ = ['BagError']


class BagError(ValueError):
    """A bag that cannot be recorded, read or scored; the message names the bag and the problem."""
