"""The grouped K-member residual CNN (echoposed_ros.training.model) and the optimiser split."""
from __future__ import annotations

import torch

from echoposed_ros.training.config import TrainConfig
from echoposed_ros.training.model import EnsembleNet, count_macs
from echoposed_ros.training.optim import build_optimizers, lr_factor, split_parameters


def _net(k: int = 3) -> EnsembleNet:
    torch.manual_seed(0)
    return EnsembleNet(k, (4, 4, 8, 8))


def test_shapes_and_identity_start():
    net = _net().eval()
    ov, op = net(torch.rand(5, 1, 32, 32))
    assert ov.shape == op.shape == (5, 3, 3, 3)
    # the head bias starts at the identity and the weights are small: outputs near I
    assert torch.allclose(ov, torch.eye(3).expand_as(ov), atol=0.2)


def test_members_are_independent_networks():
    net = _net().eval()
    x = torch.rand(4, 1, 32, 32)
    ov, op = net(x)
    with torch.no_grad():
        for p in net.member_parameters(1):
            p.add_(torch.randn_like(p) * 0.5)
    ov2, op2 = net(x)
    assert torch.equal(ov[:, 0], ov2[:, 0]) and torch.equal(op[:, 2], op2[:, 2])
    assert not torch.allclose(op[:, 1], op2[:, 1])


def test_frozen_member_batch_norm_uses_and_keeps_running_stats():
    net = _net().train()
    bn = net.blocks[0].bn1
    before = bn.running_mean.clone()
    frozen = torch.tensor([False, True, False])
    net(torch.rand(6, 1, 32, 32), frozen)
    c = bn.c
    assert torch.equal(bn.running_mean[c:2 * c], before[c:2 * c])
    assert not torch.equal(bn.running_mean[:c], before[:c])
    # the frozen member's training-mode output equals its eval-mode output
    x = torch.rand(6, 1, 32, 32)
    with torch.no_grad():
        ov_t, _ = net(x, frozen)
        net.eval()
        ov_e, _ = net(x)
    assert torch.allclose(ov_t[:, 1], ov_e[:, 1], atol=1e-5)
    assert not torch.allclose(ov_t[:, 0], ov_e[:, 0], atol=1e-5)


def test_muon_gets_2d_conv_weights_adamw_the_rest():
    net = _net()
    muon, adamw = split_parameters(net)
    assert muon and all(p.ndim == 2 for p in muon)
    head = {id(p) for p in net.head_w}
    assert not head & {id(p) for p in muon}
    assert {id(p) for p in net.head_b} <= {id(p) for p in adamw}
    assert sum(p.numel() for p in muon) + sum(p.numel() for p in adamw) == sum(p.numel() for p in net.parameters())
    opts = build_optimizers(net, TrainConfig(members=3, widths=(4, 4, 8, 8)))
    assert [type(o).__name__ for o in opts] == ['Muon', 'AdamW']


def test_lr_schedule_warms_up_and_decays_to_floor():
    cfg = TrainConfig(steps=1000, warmup_steps=100, final_lr_frac=0.1)
    assert lr_factor(cfg, 0) == 0.01
    assert lr_factor(cfg, 99) == 1.0
    assert abs(lr_factor(cfg, 1000) - 0.1) < 1e-9
    assert lr_factor(cfg, 500) < lr_factor(cfg, 200)


def test_mac_count_grows_with_input_area():
    net = EnsembleNet(1, (16, 32, 64, 128))
    m64, m128 = count_macs(net, 64), count_macs(net, 128)
    assert 3.5 < m128 / m64 < 4.1
