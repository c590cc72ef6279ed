"""The one error type of the guidance evaluation."""
from __future__ import annotations

from ...errors import EchoposedError

__all__ = ['GuidanceError']


class GuidanceError(EchoposedError):
    """Bad guidance-evaluation input (protocol field, estimator output, volume); the message names it."""
