"""The orchestrator's adapters (docs/method.md section 4)."""
from __future__ import annotations

import torch
from scipy.spatial.transform import Rotation

from echoposed_ros.training.loss import geodesic_angle
from echoposed_ros.training.orchestrator import Orchestrator


def _rots(n: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(Rotation.random(n, random_state=seed).as_matrix())


def test_adapters_recover_the_members_left_factors_with_member_0_as_anchor():
    k, n = 4, 30
    truth_v, truth_p = _rots(n, 1), _rots(n, 2)
    Cv, Cp = _rots(k, 3), _rots(k, 4)
    Cv[0] = torch.eye(3, dtype=torch.float64)
    Cp[0] = torch.eye(3, dtype=torch.float64)
    # member k reports C_k^T x truth (a frame of its own), plus small noise
    noise = torch.from_numpy(Rotation.from_rotvec(0.02 * torch.randn(n, k, 3).numpy().reshape(-1, 3))
                             .as_matrix()).view(n, k, 3, 3)
    Fv = Cv.transpose(-1, -2)[None] @ truth_v[:, None] @ noise
    Fp = Cp.transpose(-1, -2)[None] @ truth_p[:, None]
    orch = Orchestrator(k, decay=0.0)
    for _ in range(3):
        res_v, res_p = orch.update(Fv, Fp)
    assert torch.equal(orch.adapter_orbit[0], torch.eye(3, dtype=torch.float64))
    err_v = geodesic_angle(orch.adapter_orbit.transpose(-1, -2) @ Cv)
    err_p = geodesic_angle(orch.adapter_probe.transpose(-1, -2) @ Cp)
    assert float(err_v.max()) < 0.02 and float(err_p.max()) < 1e-4
    assert res_p < 1e-4 and 0.001 < res_v < 0.05
    av, ap = orch.align(Fv, Fp)
    assert float(geodesic_angle(ap.transpose(-1, -2) @ truth_p[:, None]).max()) < 1e-4


def test_state_round_trips_through_state_dict():
    orch = Orchestrator(3)
    orch.update(_rots(5 * 3, 5).view(5, 3, 3, 3), _rots(5 * 3, 6).view(5, 3, 3, 3))
    other = Orchestrator(3)
    other.load_state_dict(orch.state_dict())
    assert torch.equal(other.adapter_probe, orch.adapter_probe)
