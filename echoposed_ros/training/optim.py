"""Optimisers: Muon (torch.optim.Muon) for the 2D weight matrices, AdamW for the rest.

Muon takes only 2D parameters. The conv weights are *stored* 2D, ``(C_out, C_in * k * k)``
(model.py views them as 4D in the forward), so every conv kernel is stepped by Muon,
orthogonalised per member. AdamW takes biases, batch-norm scales and shifts, and the linear head
(a classifier-like output layer, where Muon is not recommended). Schedule: linear warm-up, then
cosine decay to ``final_lr_frac`` of the peak, the same factor for both optimisers.
"""
from __future__ import annotations

import math

import torch

from .config import TrainConfig
from .model import EnsembleNet

__all__ = ['build_optimizers', 'lr_factor', 'split_parameters']


def split_parameters(model: EnsembleNet, muon_for_conv: bool = True
                     ) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(muon_params, adamw_params): 2D conv weights to Muon, everything else to AdamW."""
    muon, adamw = [], []
    for name, p in model.named_parameters():
        is_conv = p.ndim == 2 and not name.startswith('head_')
        (muon if is_conv and muon_for_conv else adamw).append(p)
    return muon, adamw


def build_optimizers(model: EnsembleNet, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    muon, adamw = split_parameters(model, cfg.muon_for_conv)
    opts: list[torch.optim.Optimizer] = []
    if muon:
        opts.append(torch.optim.Muon(muon, lr=cfg.muon_lr, weight_decay=cfg.weight_decay))
    opts.append(torch.optim.AdamW(adamw, lr=cfg.adamw_lr, weight_decay=cfg.weight_decay))
    for opt in opts:
        for group in opt.param_groups:
            group['peak_lr'] = group['lr']
    return opts


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Warm-up then cosine multiplier on the peak learning rates at ``step``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.final_lr_frac + (1 - cfg.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * frac))


def set_lr(opts: list[torch.optim.Optimizer], factor: float) -> None:
    for opt in opts:
        for group in opt.param_groups:
            group['lr'] = group['peak_lr'] * factor
