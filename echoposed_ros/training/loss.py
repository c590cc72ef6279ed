"""The pairwise equivariance loss of docs/method.md section 3.

For one volume's pose-time pairs ``(g_i, t_i)`` and a member's projected outputs
``(F_v,i, F_p,i)``, equivariance says ``G_i = f(x_i) g_i^{-1} = (F_v,i R_v,i^T, F_p,i R_p,i^T)`` is
the same for every i. The loss is the mean over pairs i < j of

    w_orbit * angle(G_v,i^T G_v,j)^2 + w_probe * angle(G_p,i^T G_p,j)^2        ('geodesic')
    w_orbit * ||G_v,i - G_v,j||_F^2 + w_probe * ||G_p,i - G_p,j||_F^2        ('chordal')
    w_orbit * rho(angle_v) + w_probe * rho(angle_p), rho(a) = c^2 log(1 + a^2 / c^2)  ('cauchy')

The Cauchy form equals the geodesic one for angles well below c and grows only logarithmically
beyond: a pair an image's mirror confusion puts near 180 degrees (most of the geodesic loss of a
half-trained model, docs/training.md) no longer drowns the small-angle signal of the tilts.

The geodesic angle is ``atan2(sin, cos)`` with ``sin = |vee(R - R^T)| / 2`` and
``cos = (trace R - 1) / 2``: its gradient is finite at 0 and at 180 degrees (a plain arccos is
infinite there; the chordal form's gradient vanishes at 180 degrees, where an untrained net puts
an image and its mirror). The orbit term is far smaller than the probe term (the orbit range is
+-20 degrees, the probe's turn a full circle), hence its weight.
"""
from __future__ import annotations

import torch

from . import TrainingError
from .config import LOSS_FORMS

__all__ = ['LOSS_FORMS', 'distill_loss', 'geodesic_angle', 'pair_loss']


def geodesic_angle(R: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """(..., 3, 3) rotations -> (...) angles in radians, atan2 form (finite gradient at 0 and pi)."""
    c = 0.5 * (R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1.0)
    v = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0],
                     R[..., 1, 0] - R[..., 0, 1]], -1)
    s = 0.5 * torch.sqrt((v * v).sum(-1) + eps)
    return torch.atan2(s, c)


def _vee_skew(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 3) vee(R - R^T): 2 sin(angle) times the unit rotation axis."""
    return torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)


def _cauchy(a2: torch.Tensor, scale: float) -> torch.Tensor:
    """rho(a) = c^2 log(1 + a^2 / c^2) of squared angles ``a2`` (rad^2), c = ``scale`` (rad)."""
    c2 = scale * scale
    return c2 * torch.log1p(a2 / c2)


def _pair_terms(F: torch.Tensor, R: torch.Tensor, form: str, scale: float, w_x: float = 1.0) -> torch.Tensor:
    """F (N, K, 3, 3) projected outputs, R (N, 3, 3) pose factor -> (K,) mean over pairs i < j;
    scale: c of the 'cauchy' form in rad; w_x: weight of errors about the poses' own x axes:
    angle^2 * (1 + (w_x - 1) a_x^2), with a_x^2 the mean over the pair's two poses of the squared
    x component of the unit axis of ``E = G_i^T G_j`` in that pose's axes (a member's error
    ``F = A R exp(e)`` gives ``E`` the axis ``R e``); geodesic and cauchy forms."""
    Rt = R.to(F.dtype)
    G = F @ Rt.transpose(-1, -2)[:, None]                      # (N, K, 3, 3)
    n = G.shape[0]
    i, j = torch.triu_indices(n, n, offset=1, device=G.device)
    Gi, Gj = G[i], G[j]                                        # (P, K, 3, 3)
    if form == 'chordal':
        return (Gi - Gj).square().sum((-1, -2)).mean(0)
    E = Gi.transpose(-1, -2) @ Gj
    a2 = geodesic_angle(E).square()
    if w_x != 1.0:
        u = _vee_skew(E)                                       # (P, K, 3), axis times 2 sin(angle)
        # x component of R^T u = u . (x axis of R), for each pose of the pair
        ux2 = 0.5 * ((u * Rt[i][:, None, :, 0]).sum(-1).square() + (u * Rt[j][:, None, :, 0]).sum(-1).square())
        a2 = a2 * (1.0 + (w_x - 1.0) * ux2 / (u.square().sum(-1) + 1e-12))
    if form == 'cauchy':
        return _cauchy(a2, scale).mean(0)
    return a2.mean(0)


def pair_loss(F_v: torch.Tensor, F_p: torch.Tensor, R_v: torch.Tensor, R_p: torch.Tensor,
              w_orbit: float = 50.0, w_probe: float = 1.0, form: str = 'geodesic',
              scale: float = 0.5236, w_x: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-member loss of one volume's pairs.

    F_v, F_p: (N, K, 3, 3) projected member outputs; R_v, R_p: (N, 3, 3) the poses (canonical
    gauge); scale: c of the 'cauchy' form (rad); w_x: extra weight of errors about each pose's own
    x axis (the out-of-plane tilt), both factors, geodesic and cauchy forms. Returns (loss (K,),
    orbit term (K,), probe term (K,)); loss = w_orbit * orbit + w_probe * probe, in rad^2 for 'geodesic' and 'cauchy'.
    """
    if form not in LOSS_FORMS:
        raise TrainingError(f'loss form {form!r}: expected one of {LOSS_FORMS}')
    if scale <= 0:
        raise TrainingError(f'loss scale {scale!r}: expected a positive angle in rad')
    lv = _pair_terms(F_v, R_v, form, scale, w_x)
    lp = _pair_terms(F_p, R_p, form, scale, w_x)
    return w_orbit * lv + w_probe * lp, lv, lp


def distill_loss(F_v: torch.Tensor, F_p: torch.Tensor, T_v: torch.Tensor, T_p: torch.Tensor,
                 w_orbit: float = 50.0, w_probe: float = 1.0, scale: float = 0.5236) -> torch.Tensor:
    """Per-member pull towards a teacher: mean over images of ``w_orbit * rho(angle(F_v^T T_v)) +
    w_probe * rho(angle(F_p^T T_p))``, rho the Cauchy form with c = ``scale`` (rad; a teacher's gross error
    weighs little).

    F_*: (N, K, 3, 3) the student's projected member outputs; T_*: (N, K, 3, 3) the teacher's member k on the
    same slice (no gradient flows into them). Returns (K,), rad^2.
    """
    if scale <= 0:
        raise TrainingError(f'distill scale {scale!r}: expected a positive angle in rad')
    terms = [_cauchy(geodesic_angle(F.transpose(-1, -2) @ T.detach().to(F.dtype)).square(), scale)
             for F, T in ((F_v, T_v), (F_p, T_p))]
    return (w_orbit * terms[0] + w_probe * terms[1]).mean(0)
