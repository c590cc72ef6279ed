"""Adaptation of the estimator to one patient from the robot's own motion (docs/adaptation.md).

The arm knows every relative motion of the probe exactly. A bounded scripted sweep
(:mod:`.sweep`: turns about the beam, tilts, small slides, a cardiac cycle held at each pose) is
recorded as images plus the arm's probe poses (:mod:`.recording`: from a bag, from the simulator, or
live); the poses, relative to the sweep's start, become SO(3) x SO(3) labels (:mod:`.labels`); a short
fine-tune of the ensemble with the same pairwise loss, mixed with phantom batches
(:mod:`.finetune`, needs torch), writes the adapted ONNX model the pose node then loads.

:mod:`.sweep`, :mod:`.labels` and :mod:`.recording` need numpy only (the live node imports them).
"""
from __future__ import annotations

from ..errors import EchoposedError

__all__ = ['AdaptError']


class AdaptError(EchoposedError):
    """Bad adaptation input (sweep settings, recording, bag topics); the message names the culprit."""
