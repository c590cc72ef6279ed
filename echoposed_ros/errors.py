"""The base of every exception echoposed raises on bad input.

Each subpackage has its own error type (``GeometryError``, ``EstimatorError``, ``PolicyError``,
``BagError``, ``TrainingError``, ``SlicerError``, ...), all subclasses of :class:`EchoposedError`.
The command line catches :class:`EchoposedError` and prints its one-line message; any other
exception is a programming error and keeps its traceback.
"""
from __future__ import annotations

__all__ = ['EchoposedError']


class EchoposedError(ValueError):
    """Bad input to echoposed (argument, file, message, parameter); the message names the culprit
    and what was expected. A ``ValueError`` so callers that predate it keep working."""
