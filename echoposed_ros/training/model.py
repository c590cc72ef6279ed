"""The ensemble network: K residual CNN members run as one grouped network (docs/method.md section 3).

Each member: a 3x3 stem conv, 8 residual blocks (3x3 convs; blocks 1, 3, 5, 7 open a stage, the
last three of those with stride 2), batch norm in the first 4 blocks, global average pooling and a
linear head to 18 numbers read as two raw 3x3 matrices (orbit, probe). Downsampling: the stem
(stride ``stem_stride``), block 1 (``first_stride``) and blocks 3, 5, 7 (stride 2). The members keep their own
parameters (so the rotating validation member can sit out a step, and Muon orthogonalises each
member's matrices on their own); the forward concatenates them into grouped convolutions so one
call runs all K members on CPU.

Conv weights are stored 2D, ``(C_out, C_in * 9)``, and viewed as ``(C_out, C_in, 3, 3)`` in the
forward: torch.optim.Muon takes only 2D parameters.

Input ``image`` (N, 1, H, W) float32 in [0, 1], 0 outside the sector; the graph normalises it
(``(x - 0.5) / 0.25``). Output raw head matrices ``orbit, probe``: (N, K, 3, 3) each, before SVD
projection and before the orchestrator's adapters.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .orchestrator import Orchestrator

__all__ = ['EnsembleNet', 'ExportWrapper', 'MaskedBatchNorm', 'count_macs']


def _conv_param(c_out: int, c_in: int, k: int, zero: bool = False) -> nn.Parameter:
    w = torch.empty(c_out, c_in * k * k)
    if zero:
        nn.init.zeros_(w)
    else:
        nn.init.kaiming_normal_(w.view(c_out, c_in, k, k), nonlinearity='relu')
    return nn.Parameter(w)


class MaskedBatchNorm(nn.Module):
    """Batch norm over K members' channels (K*C of them) where some members can sit out.

    Training: channels of members in ``frozen`` (a (K,) bool tensor) use and keep their running
    statistics (they validate, as in eval mode); the others use batch statistics and update
    theirs. Eval: plain ``F.batch_norm`` with running statistics (exports to ONNX
    BatchNormalization, which onnxruntime folds into the conv).
    """

    def __init__(self, members: int, channels: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.k, self.c, self.momentum, self.eps = members, channels, momentum, eps
        self.weight = nn.ParameterList([nn.Parameter(torch.ones(channels)) for _ in range(members)])
        self.bias = nn.ParameterList([nn.Parameter(torch.zeros(channels)) for _ in range(members)])
        self.register_buffer('running_mean', torch.zeros(members * channels))
        self.register_buffer('running_var', torch.ones(members * channels))

    def forward(self, x: torch.Tensor, frozen: torch.Tensor | None = None) -> torch.Tensor:
        w = torch.cat(list(self.weight))
        b = torch.cat(list(self.bias))
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, w, b, False, 0.0, self.eps)
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        with torch.no_grad():
            n = x.numel() / x.shape[1]
            new_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean
            new_var = (1 - self.momentum) * self.running_var + self.momentum * var * n / max(n - 1, 1)
        if frozen is not None:   # (no test of frozen.any(): on CUDA it would wait for the GPU)
            fz = frozen.repeat_interleave(self.c)
            mean = torch.where(fz, self.running_mean, mean)
            var = torch.where(fz, self.running_var, var)
            new_mean = torch.where(fz, self.running_mean, new_mean)
            new_var = torch.where(fz, self.running_var, new_var)
        self.running_mean.copy_(new_mean)
        self.running_var.copy_(new_var)
        scale = w / torch.sqrt(var + self.eps)
        return x * scale[None, :, None, None] + (b - mean * scale)[None, :, None, None]


class _Block(nn.Module):
    """Residual block ``relu(conv-bn-relu-conv-bn(x) + shortcut(x))`` for K members at once."""

    def __init__(self, k: int, c_in: int, c_out: int, stride: int, bn: bool):
        super().__init__()
        self.k, self.c_in, self.c_out, self.stride, self.bn = k, c_in, c_out, stride, bn
        self.w1 = nn.ParameterList([_conv_param(c_out, c_in, 3) for _ in range(k)])
        # Without batch norm the second conv starts at zero: the block starts as its shortcut.
        self.w2 = nn.ParameterList([_conv_param(c_out, c_out, 3, zero=not bn) for _ in range(k)])
        self.proj = None
        if stride != 1 or c_in != c_out:
            self.proj = nn.ParameterList([_conv_param(c_out, c_in, 1) for _ in range(k)])
        if bn:
            self.bn1 = MaskedBatchNorm(k, c_out)
            self.bn2 = MaskedBatchNorm(k, c_out)
        else:
            self.b1 = nn.ParameterList([nn.Parameter(torch.zeros(c_out)) for _ in range(k)])
            self.b2 = nn.ParameterList([nn.Parameter(torch.zeros(c_out)) for _ in range(k)])

    def _w(self, plist: nn.ParameterList, c_in: int, ks: int) -> torch.Tensor:
        return torch.cat(list(plist)).view(self.k * self.c_out, c_in, ks, ks)

    def forward(self, x: torch.Tensor, frozen: torch.Tensor | None) -> torch.Tensor:
        k = self.k
        b1 = None if self.bn else torch.cat(list(self.b1))
        b2 = None if self.bn else torch.cat(list(self.b2))
        y = F.conv2d(x, self._w(self.w1, self.c_in, 3), b1, self.stride, 1, groups=k)
        if self.bn:
            y = self.bn1(y, frozen)
        y = F.relu(y)
        y = F.conv2d(y, self._w(self.w2, self.c_out, 3), b2, 1, 1, groups=k)
        if self.bn:
            y = self.bn2(y, frozen)
        s = x if self.proj is None else F.conv2d(x, self._w(self.proj, self.c_in, 1), None,
                                                 self.stride, 0, groups=k)
        return F.relu(y + s)


class EnsembleNet(nn.Module):
    """K members of the docs/method.md section 3 residual CNN, evaluated together.

    forward(image (N, 1, H, W), frozen (K,) bool or None) -> (orbit, probe), each (N, K, 3, 3)
    raw (unprojected) head matrices. The head bias starts at the identity so an untrained member
    predicts (I, I) plus small noise.
    """

    def __init__(self, members: int = 5, widths: tuple[int, ...] = (16, 32, 64, 128),
                 stem_stride: int = 2, first_stride: int = 2):
        super().__init__()
        self.k = k = members
        self.widths = tuple(int(w) for w in widths)
        self.stem_stride, self.first_stride = stem_stride, first_stride
        c0 = self.widths[0]
        self.stem_w = nn.ParameterList([_conv_param(c0, 1, 3) for _ in range(k)])
        self.stem_b = nn.ParameterList([nn.Parameter(torch.zeros(c0)) for _ in range(k)])
        blocks = []
        c_in = c0
        for i in range(8):
            c_out = self.widths[i // 2]
            stride = (first_stride if i == 0 else 2) if i % 2 == 0 else 1
            blocks.append(_Block(k, c_in, c_out, stride, bn=i < 4))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.head_w = nn.ParameterList([nn.Parameter(torch.randn(18, c_in) * 0.01) for _ in range(k)])
        eye = torch.eye(3).flatten()
        self.head_b = nn.ParameterList([nn.Parameter(torch.cat([eye, eye])) for _ in range(k)])

    def member_parameters(self, m: int) -> list[nn.Parameter]:
        """The parameters that belong to member ``m`` (index into every ParameterList)."""
        out = []
        for mod in self.modules():
            if isinstance(mod, nn.ParameterList) and len(mod) == self.k:
                out.append(mod[m])
        return out

    def forward(self, image: torch.Tensor, frozen: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.k
        n = image.shape[0]
        x = (image - 0.5) * 4.0
        c0 = self.widths[0]
        w = torch.cat(list(self.stem_w)).view(k * c0, 1, 3, 3)
        x = F.relu(F.conv2d(x, w, torch.cat(list(self.stem_b)), self.stem_stride, 1))
        for blk in self.blocks:
            x = blk(x, frozen)
        x = x.mean(dim=(2, 3)).view(n, k, -1)                    # (N, K, C)
        hw = torch.stack(list(self.head_w))                        # (K, 18, C)
        y = torch.einsum('nkc,koc->nko', x, hw) + torch.stack(list(self.head_b))
        y = y.view(n, k, 2, 3, 3)
        return y[:, :, 0], y[:, :, 1]


class ExportWrapper(torch.nn.Module):
    """The deployed network: image (N, 1, H, W) -> (orbit, probe) (N, K, 3, 3), each member's raw
    head matrices with its adapter applied on the left (``B_k M``). What ``export_onnx`` writes and
    ``onnx_to_model`` checks a rebuilt model against."""

    def __init__(self, model: EnsembleNet, orch: Orchestrator):
        super().__init__()
        self.model = model.eval()
        self.register_buffer('b_orbit', orch.adapter_orbit.detach().to(torch.float32).clone())
        self.register_buffer('b_probe', orch.adapter_probe.detach().to(torch.float32).clone())

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rv, rp = self.model(image)
        return self.b_orbit @ rv, self.b_probe @ rp


def count_macs(net: EnsembleNet, size: int) -> int:
    """Multiply-accumulates of ONE member on a ``size`` x ``size`` image (convs + head)."""
    macs = 0
    h = math.ceil(size / net.stem_stride)
    macs += h * h * net.widths[0] * 9
    for blk in net.blocks:
        h_out = math.ceil(h / blk.stride)
        macs += h_out * h_out * blk.c_out * blk.c_in * 9
        macs += h_out * h_out * blk.c_out * blk.c_out * 9
        if blk.proj is not None:
            macs += h_out * h_out * blk.c_out * blk.c_in
        h = h_out
    macs += 18 * net.blocks[-1].c_out
    return macs
