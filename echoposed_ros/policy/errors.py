"""The one exception type of :mod:`echoposed_ros.policy`."""
from __future__ import annotations

from ..errors import EchoposedError

__all__ = ['PolicyError']


class PolicyError(EchoposedError):
    """Bad input to the guidance policy: an invalid configuration value, target or view table.

    The message names the culprit (field, file, view name) with its value and what was expected.
    """
