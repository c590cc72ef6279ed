"""The one exception type of :mod:`echoposed_ros.geometry`."""
from __future__ import annotations

from ..errors import EchoposedError

__all__ = ['GeometryError']


class GeometryError(EchoposedError):
    """Bad input to the geometry core: wrong shape, NaN/inf, not a rotation, zero quaternion.

    The message names the argument, the offending value or index and what was expected.
    """
