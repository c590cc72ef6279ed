"""The orchestrator (docs/method.md section 4): one adapter ``B_k = (B_v,k, B_p,k)`` per member fixes the
free constant left factor of each member so the aligned predictions ``B_k F_k(x)`` agree.

Refit (outputs detached): per factor, the current consensus ``M(x) = proj(mean_k B_k F_k(x))``,
then ``B_k = proj(S_k)`` with ``S_k`` an exponential moving sum of ``sum_x M(x) F_k(x)^T``
(Procrustes), for every member including 0; then all are re-anchored, ``B_k <- B_0^T B_k``, so
member 0 is the anchor (``B_0 = I``) and the common frame cannot drift. A few such rounds per
batch (the consensus moves as the adapters do).
"""
from __future__ import annotations

import torch

from .loss import geodesic_angle
from .svd import project_to_so3

__all__ = ['Orchestrator']


class Orchestrator(torch.nn.Module):
    """Adapters for K members; buffers ``adapter_orbit``, ``adapter_probe``: (K, 3, 3) rotations."""

    def __init__(self, members: int, decay: float = 0.9):
        super().__init__()
        self.k, self.decay = members, decay
        eye = torch.eye(3, dtype=torch.float64).expand(members, 3, 3).clone()
        self.register_buffer('adapter_orbit', eye.clone())
        self.register_buffer('adapter_probe', eye.clone())
        self.register_buffer('sum_orbit', torch.zeros(members, 3, 3, dtype=torch.float64))
        self.register_buffer('sum_probe', torch.zeros(members, 3, 3, dtype=torch.float64))

    def align(self, F_v: torch.Tensor, F_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, K, 3, 3) member outputs -> (N, K, 3, 3) ``B_k F_k`` per factor."""
        return (self.adapter_orbit.to(F_v.dtype) @ F_v, self.adapter_probe.to(F_p.dtype) @ F_p)

    @torch.no_grad()
    def update(self, F_v: torch.Tensor, F_p: torch.Tensor, reduce=None) -> tuple[float, float]:
        """Refit the adapters on one batch of projected outputs (N, K, 3, 3).

        ``reduce`` (optional) sums a tensor across processes in place (DDP). Returns the mean
        residual angle (rad) of aligned members from the consensus, (orbit, probe), after the refit.
        """
        res = []
        for F, B, S in ((F_v, self.adapter_orbit, self.sum_orbit),
                        (F_p, self.adapter_probe, self.sum_probe)):
            F = F.detach().to(torch.float64)
            for _ in range(3):
                M = project_to_so3((B @ F).mean(1))                       # (N, 3, 3)
                batch_sum = torch.einsum('nab,nkcb->kac', M, F)           # sum_x M F_k^T
                if reduce is not None:
                    reduce(batch_sum)
                S_new = self.decay * S + batch_sum
                B_all = project_to_so3(S_new)
                anchor = B_all[0].transpose(-1, -2)                       # re-anchor: B_0 = I
                B.copy_(anchor @ B_all)
                B[0] = torch.eye(3, dtype=B.dtype, device=B.device)
            S.copy_(anchor @ S_new)
            A = B @ F
            M = project_to_so3(A.mean(1))
            res.append(float(geodesic_angle(M[:, None].transpose(-1, -2) @ A).mean()))
        return res[0], res[1]
