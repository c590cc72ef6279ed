"""Training the Echo-POSED ensemble (docs/method.md sections 3-5): config, model, SVD head, loss,
orchestrator, data, optimisers, the training loop and ONNX export. Needs torch; the runtime
estimator (``echoposed_ros.estimator``) does not.
"""
from __future__ import annotations

from ..errors import EchoposedError

__all__ = ['TrainingError', 'TrainingStopped']


class TrainingError(EchoposedError):
    """Bad training input (config field, data source, checkpoint); the message names the culprit."""


class TrainingStopped(TrainingError):
    """The run was stopped by a signal (SIGINT, SIGTERM) after finishing its step; the checkpoint
    holds that step, and the same command resumes it."""

    def __init__(self, signum: int, step: int, checkpoint: str) -> None:
        import signal
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f'stopped by {signal.Signals(signum).name} after step {step}; checkpoint {checkpoint} '
                         '(the same command resumes it)')
