"""Estimator speed: the K-member ensemble on one 128 x 128 image, onnxruntime vs PyTorch eager.

Builds the training code's ensemble network (``echoposed_ros.training.model.EnsembleNet``, the
architecture of the training config's defaults unless overridden) with random weights and random
orchestrator adapters, exports it to ONNX under the model contract (the training code's exporter
when it exists, else ``torch.onnx.export`` plus the contract's metadata), and times in the same
process, in interleaved rounds:

- ``median_ms``: one onnxruntime session call on a (1, 1, S, S) image (the runtime's
  ``EnsembleModel.run``: CPU provider, all graph optimisations, ``--threads`` intra-op threads);
- ``torch_median_ms``: the same ensemble (same weights, adapters applied) in PyTorch eager,
  ``torch.inference_mode()``, timed with 1 thread and with ``--threads`` threads; the faster of
  the two counts (on a crowded machine PyTorch's OpenMP threads can be many times slower than
  one thread, and the baseline should not lose by that);
- ``median_ms_by_session_config``: the same call with 1 and ``--threads`` intra-op threads, worker
  spinning on and off (information for tuning; ``median_ms`` is the runtime default);
- ``estimator_median_ms``: the whole runtime path ``Estimator.estimate`` on a mono8 image of the
  model's size (conversion, session call, SVD projection, mean, sigma^2, gauge).

``ratio`` = torch / onnxruntime; ``gflops`` = 2 x MACs of the K members / ``median_ms``.
Targets: ``median_ms <= 10`` and ``ratio >= 2``.

    python benchmarks/bench_estimator.py --json out.json     # or: echoposed bench estimator --json out.json

Heavy imports (torch, onnx) happen inside :func:`run`; the runtime itself never imports torch.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

TARGET_MEDIAN_MS = 10.0
TARGET_RATIO = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--size', type=int, default=128, help='image side in pixels (default 128)')
    parser.add_argument('--members', type=int, default=None, help='K (default: the training config, 5)')
    parser.add_argument('--widths', type=str, default=None,
                        help='stage widths "a,b,c,d" (default: the training config)')
    parser.add_argument('--stem-stride', type=int, default=None, help='stride of the first conv (default: config)')
    parser.add_argument('--threads', type=int, default=2, help='threads for both runtimes (default 2)')
    parser.add_argument('--rounds', type=int, default=5, help='interleaved rounds (default 5)')
    parser.add_argument('--repeats', type=int, default=20, help='onnxruntime calls per round (default 20)')
    parser.add_argument('--torch-repeats', type=int, default=5, help='torch calls per round (default 5)')
    parser.add_argument('--model-out', type=Path, default=None, help='keep the exported ONNX file here')
    parser.add_argument('--seed', type=int, default=0)


def _machine() -> dict:
    cpu = platform.processor() or ''
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu)
    except OSError:
        pass
    import numpy
    import onnxruntime
    import torch
    return {'cpu': cpu, 'cpus': os.cpu_count(),
            'load_avg_1min': os.getloadavg()[0] if hasattr(os, 'getloadavg') else None,
            'platform': platform.platform(), 'python': platform.python_version(),
            'numpy': numpy.__version__, 'onnxruntime': onnxruntime.__version__, 'torch': torch.__version__}


def _ensemble(args):
    """(net wrapped with adapters, config dict, MACs of one member)."""
    import torch

    from echoposed_ros.training.config import TrainConfig
    from echoposed_ros.training.model import EnsembleNet, count_macs

    cfg = TrainConfig()
    members = args.members or cfg.members
    widths = tuple(int(w) for w in args.widths.split(',')) if args.widths else tuple(cfg.widths)
    stem = args.stem_stride or cfg.stem_stride
    torch.manual_seed(args.seed)
    net = EnsembleNet(members, widths=widths, stem_stride=stem).eval()
    with torch.no_grad():                          # random, non-trivial batch-norm statistics
        for mod in net.modules():
            if hasattr(mod, 'running_var') and hasattr(mod, 'running_mean'):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
        for w in net.head_w:                        # outputs far from the head's identity bias, so the
            w.mul_(30.0)                            # ONNX-vs-torch agreement check means something
    from scipy.spatial.transform import Rotation
    B = torch.tensor(Rotation.random(2 * members, random_state=args.seed).as_matrix(), dtype=torch.float32)

    class WithAdapters(torch.nn.Module):
        """The exported contract: adapters applied on the left of each member's raw matrices."""

        def __init__(self):
            super().__init__()
            self.net = net
            self.register_buffer('b_orbit', B[:members].clone())
            self.register_buffer('b_probe', B[members:].clone())

        def forward(self, image):
            orbit, probe = self.net(image)
            return self.b_orbit[None] @ orbit, self.b_probe[None] @ probe

    config = {'members': members, 'widths': list(widths), 'stem_stride': stem, 'size': args.size,
              'sector_angle_deg': cfg.sector_angle_deg, 'sector_depth_mm': cfg.sector_depth_mm}
    return WithAdapters().eval(), config, count_macs(net, args.size)


def _export(module, config: dict, path: Path) -> str:
    """Write ``module`` as a contract-conforming ONNX file; returns which exporter was used."""
    import torch
    try:   # the training code's exporter, once it exists
        from echoposed_ros.training import export as training_export  # type: ignore[attr-defined]
        fn = getattr(training_export, 'export_module', None)
    except ImportError:
        fn = None
    if fn is not None:
        fn(module, path, size=config['size'])
        return 'echoposed_ros.training.export.export_module'
    import onnx
    x = torch.rand(1, 1, config['size'], config['size'])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(module, (x,), str(path), input_names=['image'], output_names=['orbit', 'probe'],
                          dynamic_axes={'image': {0: 'N'}, 'orbit': {0: 'N'}, 'probe': {0: 'N'}},
                          opset_version=17, dynamo=False)
    model = onnx.load(str(path))
    meta = {
        'echoposed_format': '1', 'input_height': config['size'], 'input_width': config['size'],
        'sector_angle_rad': math.radians(config['sector_angle_deg']),
        'sector_depth_mm': config['sector_depth_mm'],
        'intensity': {'range': [0.0, 1.0], 'outside_sector': 0.0}, 'members': config['members'],
        'train_config': {'benchmark': True, **config}, 'train_data': {'benchmark': 'random weights'},
        'model_name': 'bench_random',
    }
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, json.dumps(v)
    onnx.save(model, str(path))
    return 'torch.onnx.export (TorchScript exporter, opset 17) + contract metadata'


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from echoposed_ros.estimator import Estimator, model_fan

    torch.set_num_threads(args.threads)
    module, config, macs = _ensemble(args)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model_out or Path(tmp) / 'bench_ensemble.onnx'
        exporter = _export(module, config, path)
        est = Estimator(path, intra_op_threads=args.threads)
        size = args.size
        rng = np.random.default_rng(args.seed)
        fan = model_fan(size, size, est.model.info.sector_angle_rad)
        grey = np.where(fan.mask((size, size)), rng.random((size, size)), 0.0).astype(np.float32)
        x = grey[None, None]
        xt = torch.from_numpy(x.copy())
        mono8 = np.round(grey * 255).astype(np.uint8)

        with torch.inference_mode():
            ref_v, ref_p = module(xt)
        out_v, out_p = est.model.run(x)
        max_diff = float(max(np.abs(out_v - ref_v.numpy()).max(), np.abs(out_p - ref_p.numpy()).max()))

        for _ in range(3):                                    # warm up both
            est.model.run(x)
            est.estimate(mono8)
            with torch.inference_mode():
                module(xt)
        from echoposed_ros.estimator import EnsembleModel
        variants = {f'threads={n},spin={int(sp)}': EnsembleModel(path, intra_op_threads=n, allow_spinning=sp)
                    for n in sorted({1, args.threads}) for sp in (True, False)}
        t_var: dict[str, list[float]] = {k: [] for k in variants}
        torch_threads = sorted({1, args.threads})
        t_ort, t_est = [], []
        t_torch: dict[int, list[float]] = {n: [] for n in torch_threads}
        for _ in range(args.rounds):
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                est.model.run(x)
                t_ort.append(time.perf_counter() - t0)
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                est.estimate(mono8)
                t_est.append(time.perf_counter() - t0)
            for key, variant in variants.items():
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    variant.run(x)
                    t_var[key].append(time.perf_counter() - t0)
            for n in torch_threads:
                torch.set_num_threads(n)
                with torch.inference_mode():
                    for _ in range(args.torch_repeats):
                        t0 = time.perf_counter()
                        module(xt)
                        t_torch[n].append(time.perf_counter() - t0)
        torch.set_num_threads(args.threads)
        size_bytes = Path(path).stat().st_size
    median = float(np.median(t_ort)) * 1e3
    torch_by_threads = {n: float(np.median(v)) * 1e3 for n, v in t_torch.items()}
    best_threads = min(torch_by_threads, key=torch_by_threads.get)
    torch_median = torch_by_threads[best_threads]
    flops = 2.0 * macs * config['members']
    result = {
        'median_ms': median,
        'torch_median_ms': torch_median,
        'ratio': torch_median / median,
        'gflops': flops / (median * 1e-3) / 1e9,
        'torch_gflops': flops / (torch_median * 1e-3) / 1e9,
        'estimator_median_ms': float(np.median(t_est)) * 1e3,
        'p90_ms': float(np.percentile(t_ort, 90)) * 1e3,
        'min_ms': float(np.min(t_ort)) * 1e3,
        'torch_min_ms': float(np.min(t_torch[best_threads])) * 1e3,
        'torch_median_ms_by_threads': {str(n): v for n, v in torch_by_threads.items()},
        'median_ms_by_session_config': {k: float(np.median(v)) * 1e3 for k, v in t_var.items()},
        'torch_threads': best_threads,
        'gflop_per_image': flops / 1e9,
        'macs_per_member': int(macs),
        'params_per_member': int(sum(p.numel() for p in module.net.parameters()) // config['members']),
        'onnx_bytes': int(size_bytes),
        'max_abs_diff_onnx_vs_torch': max_diff,
        'exporter': exporter,
        'config': config,
        'threads': args.threads,
        'samples': {'onnxruntime': len(t_ort), 'torch': sum(len(v) for v in t_torch.values()),
                    'estimator': len(t_est)},
        'targets': {'median_ms_max': TARGET_MEDIAN_MS, 'ratio_min': TARGET_RATIO},
        'machine': _machine(),
    }
    result['targets_met'] = bool(median <= TARGET_MEDIAN_MS and result['ratio'] >= TARGET_RATIO)
    return result


def summary(result: dict) -> str:
    c = result['config']
    return (f"estimator: K={c['members']} on {c['size']}x{c['size']}: onnxruntime median "
            f"{result['median_ms']:.2f} ms (target <= {TARGET_MEDIAN_MS:g}), torch eager "
            f"{result['torch_median_ms']:.2f} ms, ratio {result['ratio']:.1f}x (target >= {TARGET_RATIO:g}), "
            f"{result['gflops']:.1f} GFLOP/s; full estimate {result['estimator_median_ms']:.2f} ms; "
            f"targets {'met' if result['targets_met'] else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument('--json', metavar='PATH', help='write the figures as JSON here')
    args = parser.parse_args(argv)
    result = run(args)
    print(summary(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
