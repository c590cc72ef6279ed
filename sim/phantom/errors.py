"""The one exception type of ``echoposed_sim.phantom``."""
from __future__ import annotations

from echoposed_ros.errors import EchoposedError

__all__ = ['PhantomError']


class PhantomError(EchoposedError):
    """Bad input to the phantom generator (a style file, a parameter, a cache entry).

    The message names the culprit (file, field, value) and what was expected.
    """
