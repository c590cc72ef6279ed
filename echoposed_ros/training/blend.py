"""Weight-space blend of a fine-tuned checkpoint with the model it started from (WiSE-FT).

``alpha * tuned + (1 - alpha) * original`` for every floating-point tensor of the ensemble's state
(weights, batch-norm statistics); integer buffers (batch counts) and the orchestrator (each member's
adapter) are the tuned run's. Both must be the same architecture, e.g. a warm-started fine-tune and its
``init_from``. A blend keeps much of what the fine-tune learnt and less of what it broke elsewhere
(Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022); ``echoposed adapt --blend``
measures it in docs/adaptation.md.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from . import TrainingError
from .checkpoint import load_checkpoint, read_checkpoint

__all__ = ['blend_checkpoint']


def blend_checkpoint(tuned: str | Path, original: str | Path, alpha: float, out: str | Path) -> Path:
    """Write to ``out`` the checkpoint ``tuned`` (a ``.pt``) with its model weights blended towards
    ``original`` (``.pt`` or exported ``.onnx``): ``alpha`` 1 keeps ``tuned``, 0 gives ``original``'s
    weights. The rest of ``tuned`` (config, orchestrator, step, records) is kept, with ``blend``
    ``{'alpha', 'original'}`` added. TrainingError names the file and tensor that do not fit."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (math.isfinite(alpha)
                                                                             and 0.0 <= alpha <= 1.0):
        raise TrainingError(f'blend alpha {alpha!r}; expected a share in [0, 1] (1: the fine-tuned weights alone)')
    _, ck = read_checkpoint(tuned)
    _, base, _, _ = load_checkpoint(original)
    theirs = base.state_dict()
    mine = ck['model']
    if set(mine) != set(theirs):
        extra, missing = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
        raise TrainingError(f'blend {tuned} with {original}: not the same architecture (only in the first: '
                            f'{extra[:3]}, only in the second: {missing[:3]})')
    blended = {}
    for name, t in mine.items():
        o = theirs[name].to(t.device)
        if o.shape != t.shape:
            raise TrainingError(f'blend {tuned} with {original}: {name} is {tuple(t.shape)} against '
                                f'{tuple(o.shape)}')
        blended[name] = alpha * t + (1.0 - alpha) * o.to(t.dtype) if t.is_floating_point() else t
    ck = {**ck, 'model': blended, 'blend': {'alpha': float(alpha), 'original': str(original)}}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix('.tmp')
    torch.save(ck, tmp)
    os.replace(tmp, out)
    return out
