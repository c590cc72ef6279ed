"""A fast angular calibration (docs/method.md section 7, reduced) for training experiments.

Per held-out volume, at its base pose and frame 0, the probe is turned about its own z axis
(``z_steps`` turns over the full circle), about x and about y (``tilt_steps`` turns over
+-30 degrees), and the orbit is turned about x and y (+-20 degrees, our addition: the orbit
factor). The predicted turn is the aligned ensemble mean's factor relative to the unturned
slice's, read as the signed angle about the turn axis. MAAE per axis (deg) and normalised MAAE
(MAAE / MAAE of the same predictions randomly permuted, so chance = 1.0). The full protocol is
``echoposed eval calibration``; this one trades resolution for speed.
"""
from __future__ import annotations

import numpy as np
import torch

from echoposed_ros.geometry import project_to_so3 as np_project
from echoposed_ros.geometry import rot_x, rot_y, rot_z
from echoposed_sim.sector import SectorGeometry
from echoposed_sim.slicer import slice_batch

from .config import TrainConfig
from .model import EnsembleNet
from .orchestrator import Orchestrator

__all__ = ['predict', 'quick_calibration']


@torch.no_grad()
def predict(model: EnsembleNet, orch: Orchestrator, images: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """images (N, H, W) -> aligned ensemble means (orbit, probe), each (N, 3, 3) float64, and
    sigma^2 (N,) rad^2 (docs/method.md section 5: mean over members of the squared geodesic distance of
    the aligned member from the mean, both factors)."""
    modes = {m: m.training for m in model.modules()}   # restored one by one (frozen batch norm stays frozen)
    model.eval()
    device = next(model.parameters()).device
    rv, rp = model(torch.from_numpy(np.ascontiguousarray(images[:, None], dtype=np.float32)).to(device))
    for m, mode in modes.items():
        m.training = mode
    av, ap = orch.align(rv.double(), rp.double())
    # proj(B M) = B proj(M): project the aligned raw matrices, then average and project
    Av, Ap = np_project(av.cpu().numpy()), np_project(ap.cpu().numpy())
    mv, mp = np_project(Av.mean(1)), np_project(Ap.mean(1))
    from echoposed_ros.geometry import angle
    sigma2 = (angle(np.swapaxes(mv, -1, -2)[:, None] @ Av) ** 2
              + angle(np.swapaxes(mp, -1, -2)[:, None] @ Ap) ** 2).mean(1)
    return mv, mp, sigma2


def _signed_angle(R: np.ndarray, axis: int) -> np.ndarray:
    """Rotation (N, 3, 3) -> signed angle (rad) of its rotation vector's component about ``axis``."""
    from scipy.spatial.transform import Rotation
    return Rotation.from_matrix(R).as_rotvec()[:, axis]


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


def _maae(pred: np.ndarray, true: np.ndarray, rng: np.random.Generator, perms: int = 20) -> tuple[float, float]:
    err = np.abs(_wrap(pred - true)).mean()
    chance = np.mean([np.abs(_wrap(rng.permutation(pred) - true)).mean() for _ in range(perms)])
    return float(np.rad2deg(err)), float(err / max(chance, 1e-12))


def quick_calibration(model: EnsembleNet, orch: Orchestrator, volumes: list, cfg: TrainConfig,
                      z_steps: int = 36, tilt_steps: int = 13, seed: int = 0) -> dict:
    """-> {axis: {'maae_deg', 'normalized_maae'}} for probe axes 'x', 'y', 'z' and orbit axes
    'orbit_x', 'orbit_y', pooled over ``volumes``; and 'sigma2': {'mean' (rad^2),
    'spearman_vs_error'} over the probe-turn slices (rank correlation of sigma^2 with the
    slice's turn error)."""
    sector = SectorGeometry(np.deg2rad(cfg.sector_angle_deg), cfg.sector_depth_mm, cfg.input_size,
                            cfg.input_size)
    turns = {'z': np.linspace(-np.pi, np.pi, z_steps, endpoint=False),
             'x': np.deg2rad(np.linspace(-30, 30, tilt_steps)),
             'y': np.deg2rad(np.linspace(-30, 30, tilt_steps)),
             'orbit_x': np.deg2rad(np.linspace(-20, 20, tilt_steps)),
             'orbit_y': np.deg2rad(np.linspace(-20, 20, tilt_steps))}
    makers = {'x': rot_x, 'y': rot_y, 'z': rot_z, 'orbit_x': rot_x, 'orbit_y': rot_y}
    pooled: dict[str, tuple[list, list]] = {a: ([], []) for a in turns}
    sig: list[np.ndarray] = []
    errs: list[np.ndarray] = []
    for vol in volumes:
        Rv0, Rp0 = np.asarray(vol.base_orbit), np.asarray(vol.base_probe)
        for axis, ang in turns.items():
            n = len(ang)
            rot = makers[axis](ang)
            if axis.startswith('orbit'):
                Rv, Rp = Rv0 @ rot, np.broadcast_to(Rp0, (n, 3, 3))
            else:
                Rv, Rp = np.broadcast_to(Rv0, (n, 3, 3)), Rp0 @ rot
            ref_v, ref_p = (Rv0[None], Rp0[None])
            imgs = slice_batch(vol, np.concatenate([ref_v, Rv]), np.concatenate([ref_p, Rp]),
                               np.zeros(n + 1), sector)
            mv, mp, s2 = predict(model, orch, imgs)
            M = mv if axis.startswith('orbit') else mp
            rel = np.swapaxes(M[0], -1, -2)[None] @ M[1:]
            idx = {'x': 0, 'y': 1, 'z': 2}[axis[-1]]
            pred = _signed_angle(rel, idx)
            pooled[axis][0].append(pred)
            pooled[axis][1].append(ang)
            if not axis.startswith('orbit'):
                sig.append(s2[1:])
                errs.append(np.abs(_wrap(pred - ang)))
    rng = np.random.default_rng(seed)
    out = {}
    for axis, (pred, true) in pooled.items():
        m, nm = _maae(np.concatenate(pred), np.concatenate(true), rng)
        out[axis] = {'maae_deg': m, 'normalized_maae': nm}
    from scipy.stats import spearmanr
    s_all, e_all = np.concatenate(sig), np.concatenate(errs)
    out['sigma2'] = {'mean': float(s_all.mean()), 'spearman_vs_error': float(spearmanr(s_all, e_all)[0])}
    return out
