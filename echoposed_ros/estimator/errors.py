"""The one exception type of :mod:`echoposed_ros.estimator`."""
from __future__ import annotations

from ..errors import EchoposedError

__all__ = ['EstimatorError']


class EstimatorError(EchoposedError):
    """A model file or an input image the estimator cannot use.

    The message names the culprit (model file and field, or image and encoding) and what was
    expected, in one line.
    """
