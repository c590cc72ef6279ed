"""SVD projection onto SO(3) with the custom backward (echoposed_ros.training.svd)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from echoposed_ros.geometry import project_to_so3 as np_project
from echoposed_ros.training.svd import project_to_so3


def _rot(seed: int) -> torch.Tensor:
    from scipy.spatial.transform import Rotation
    return torch.from_numpy(Rotation.random(random_state=seed).as_matrix())


def test_forward_matches_numpy_projection_and_is_a_rotation():
    M = torch.randn(20, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    R = project_to_so3(M)
    np.testing.assert_allclose(R.numpy(), np_project(M.numpy()), atol=1e-10)
    eye = torch.eye(3, dtype=torch.float64).expand(20, 3, 3)
    assert torch.allclose(R.transpose(-1, -2) @ R, eye, atol=1e-10)
    assert torch.allclose(torch.linalg.det(R), torch.ones(20, dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize('flip', [False, True])
def test_gradcheck_generic_and_reflected_inputs(flip):
    g = torch.Generator().manual_seed(3)
    M = torch.randn(5, 3, 3, dtype=torch.float64, generator=g)
    if flip:  # det < 0: the last singular direction is flipped
        M = M * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
        M = torch.where(torch.linalg.det(M)[:, None, None] > 0, -M, M)
        assert (torch.linalg.det(M) < 0).all()
    assert torch.autograd.gradcheck(project_to_so3, (M.requires_grad_(),))


def test_gradient_at_exactly_repeated_singular_values_is_finite_and_matches_finite_difference():
    # A scaled rotation has three equal singular values: the case a network head produces and the
    # reason for the custom backward (the textbook SVD backward divides by s_i^2 - s_j^2 there).
    M = (2.5 * _rot(0)).requires_grad_()
    assert torch.linalg.svdvals(M.detach()).diff().abs().max() < 1e-12
    W = torch.arange(9.0, dtype=torch.float64).view(3, 3)
    (project_to_so3(M) * W).sum().backward()
    assert torch.isfinite(M.grad).all()
    # proj(cR + hD) is smooth in h at h = 0, so a central difference checks the gradient there too
    h = 1e-6
    for seed in range(3):
        D = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(10 + seed))
        with torch.no_grad():
            fd = ((project_to_so3(M + h * D) * W).sum() - (project_to_so3(M - h * D) * W).sum()) / (2 * h)
        assert float((M.grad * D).sum()) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)


def test_gradient_of_scaled_rotation_matches_finite_difference():
    M = (1.7 * _rot(4)).requires_grad_()
    W = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    (project_to_so3(M) * W).sum().backward()
    D = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    h = 1e-6
    with torch.no_grad():
        fd = ((project_to_so3(M + h * D) * W).sum() - (project_to_so3(M - h * D) * W).sum()) / (2 * h)
    assert float((M.grad * D).sum()) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)
