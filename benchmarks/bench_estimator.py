"""Estimator speed: the K-member ensemble on one 128 x 128 image, onnxruntime vs PyTorch eager.

Builds the training code's ensemble (``echoposed_ros.training.checkpoint.build_model``: the training
config's architecture unless overridden) with random weights and random orchestrator adapters,
saves it as a training checkpoint and exports that with the training code's exporter
(``echoposed_ros.training.export.export_onnx``: the model contract), and times in the same
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
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

TARGET_MEDIAN_MS = 10.0
TARGET_RATIO = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--size', type=int, default=128, help='image side in pixels (default 128)')
    parser.add_argument('--members', type=int, default=None, help='K (default: the training config, 5)')
    parser.add_argument('--widths', type=str, default=None,
                        help='stage widths "a,b,c,d" (default: the training config)')
    parser.add_argument('--stem-stride', type=int, default=None, help='stride of the first conv (default: config)')
    parser.add_argument('--first-stride', type=int, default=None, help='stride of block 1 (default: config)')
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


def _ensemble(args, checkpoint: Path):
    """Build the training code's ensemble (random weights, random adapters), save it as a training
    checkpoint; returns (the eager module that the export wraps, config summary, MACs per member)."""
    import torch
    from scipy.spatial.transform import Rotation

    from echoposed_ros.training.checkpoint import build_model
    from echoposed_ros.training.config import TrainConfig
    from echoposed_ros.training.export import ExportWrapper
    from echoposed_ros.training.model import count_macs

    base = TrainConfig()
    widths = tuple(int(w) for w in args.widths.split(',')) if args.widths else tuple(base.widths)
    cfg = base.replace(input_size=args.size, members=args.members or base.members, widths=widths,
                       stem_stride=args.stem_stride or base.stem_stride,
                       first_stride=args.first_stride or base.first_stride)
    torch.manual_seed(args.seed)
    net, orch = build_model(cfg)
    with torch.no_grad():                          # random, non-trivial batch-norm statistics
        for mod in net.modules():
            if hasattr(mod, 'running_var') and hasattr(mod, 'running_mean'):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
        for w in net.head_w:                        # outputs far from the head's identity bias, so the
            w.mul_(30.0)                            # ONNX-vs-torch agreement check means something
        B = torch.tensor(Rotation.random(2 * cfg.members, random_state=args.seed).as_matrix())
        orch.adapter_orbit.copy_(B[:cfg.members])
        orch.adapter_probe.copy_(B[cfg.members:])
    torch.save({'config': cfg.to_json(), 'model': net.state_dict(), 'orchestrator': orch.state_dict(),
                'step': 0, 'data': {'benchmark': 'random weights'}}, checkpoint)
    config = {'members': cfg.members, 'widths': list(cfg.widths), 'stem_stride': cfg.stem_stride,
              'first_stride': cfg.first_stride, 'size': cfg.input_size, 'sector_angle_deg': cfg.sector_angle_deg,
              'sector_depth_mm': cfg.sector_depth_mm}
    return ExportWrapper(net.eval(), orch).eval(), config, count_macs(net, cfg.input_size)


def _export(checkpoint: Path, path: Path) -> str:
    """The training code's exporter: checkpoint -> contract-conforming ONNX file."""
    from echoposed_ros.training.export import export_onnx
    export_onnx(checkpoint, path, model_name='bench_random', pin_batches=0)   # random weights: no frame to pin
    return 'echoposed_ros.training.export.export_onnx'


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from echoposed_ros.estimator import Estimator, model_fan

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        module, config, macs = _ensemble(args, Path(tmp) / 'bench.ckpt')
        path = args.model_out or Path(tmp) / 'bench_ensemble.onnx'
        exporter = _export(Path(tmp) / 'bench.ckpt', path)
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
        'params_per_member': int(sum(p.numel() for p in module.model.parameters()) // config['members']),
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
