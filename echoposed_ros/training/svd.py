"""Projection of 3x3 matrices onto SO(3) by SVD, with a backward that stays finite.

``project(M) = U diag(1, 1, det(U V^T)) V^T`` (the nearest rotation in the Frobenius norm).
torch.linalg.svd's backward divides by ``s_i^2 - s_j^2`` and gives NaN when singular values
repeat, which they do whenever the head outputs a scaled rotation. With ``R = proj(M)`` and
``M = R H`` (``H = V' S' V'^T``, ``S'`` the singular values with the last one's sign set by
det(U V^T), ``V'`` = V with that column's sign), a perturbation gives ``R^T dR = Omega`` with
``(V'^T Omega V')_ij = (A_ij - A_ji) / (s'_i + s'_j)``, ``A = V'^T R^T dM V'``; so only the sums
``s'_i + s'_j`` appear, which vanish only when M is (near) rank-deficient. The backward is then
``dL/dM = U [K o (X - X^T)] V'^T`` with ``X = V'^T R^T G V'``, ``K_ij = 1 / (s'_i + s'_j)``.
"""
from __future__ import annotations

import torch

__all__ = ['project_to_so3']

_EPS = 1e-6


class _ProjectSO3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, M: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        U, S, Vh = torch.linalg.svd(M)
        d = torch.sign(torch.linalg.det(U @ Vh))
        d = torch.where(d == 0, torch.ones_like(d), d)
        V = Vh.transpose(-1, -2).clone()
        V[..., :, 2] = V[..., :, 2] * d[..., None]
        Sp = S.clone()
        Sp[..., 2] = Sp[..., 2] * d
        R = U @ V.transpose(-1, -2)
        ctx.save_for_backward(U, Sp, V, R)
        return R

    @staticmethod
    def backward(ctx, G: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        U, Sp, V, R = ctx.saved_tensors
        X = V.transpose(-1, -2) @ R.transpose(-1, -2) @ G @ V
        denom = Sp[..., :, None] + Sp[..., None, :]
        denom = torch.where(denom.abs() < _EPS, torch.full_like(denom, _EPS), denom)
        Y = (X - X.transpose(-1, -2)) / denom
        return U @ Y @ V.transpose(-1, -2)


def project_to_so3(M: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) any real matrices -> (..., 3, 3) nearest rotations; differentiable (finite at
    repeated singular values)."""
    shape = M.shape
    return _ProjectSO3.apply(M.reshape(-1, 3, 3)).reshape(shape)
