"""Training the Echo-POSED ensemble (METHOD.md sections 3-5): config, model, SVD head, loss,
orchestrator, data, optimisers, the training loop and ONNX export. Needs torch; the runtime
estimator (``echoposed_ros.estimator``) does not.
"""
from __future__ import annotations

__all__ = ['TrainingError']


class TrainingError(ValueError):
    """Bad training input (config field, data source, checkpoint); the message names the culprit."""
