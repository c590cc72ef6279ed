"""The one exception type of ``echoposed_sim.world``."""
from __future__ import annotations

from echoposed_ros.errors import EchoposedError

__all__ = ['WorldError']


class WorldError(EchoposedError):
    """Bad input to a simulated world (non-finite twist, wrong shape, unknown frame name, ...).

    The message names the argument, the value and what was expected. An unreachable pose is
    *not* an error: it is reported by ``status()``.
    """
