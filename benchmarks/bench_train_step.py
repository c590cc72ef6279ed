"""Training-step speed: where a faster step would come from (the 2.5 h training target).

Times the whole update of ``echoposed_ros.training.train`` (forward of the K-member grouped net,
SVD projection, pairwise loss, backward, Muon + AdamW steps) on a synthetic batch of the default
config (16 poses + 16 mirrors of 64 x 64 slices, K = 5), for these variants:

- ``fp32``: the training loop as it runs (the baseline, measured in the same run);
- ``channels_last``: input and activations in NHWC memory layout (oneDNN's native layout);
- ``bf16``: the network's forward under ``torch.autocast('cpu', torch.bfloat16)`` (SVD, loss and
  optimiser stay float32); on CPUs with AVX-512 BF16 oneDNN runs the convolutions in bf16;
- each at 1 and at 2 intra-op threads (``--threads``).

Variants are interleaved round by round so a shared machine's load falls on all of them alike.
``ratio`` = baseline median / variant median (above 1: faster). ``loss_rel_diff``: relative
difference of the variant's first loss from the float32 one on the same weights and batch
(bf16's precision cost). The data worker is not timed (it runs in its own process in training).

    echoposed bench train-step --json docs/bench/train_step.json --markdown docs/bench/train_step.md
    # or: .venv/bin/python benchmarks/bench_train_step.py --json ... --markdown ...

Heavy imports happen inside :func:`run`, so building the command line stays cheap.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--rounds', type=int, default=5, help='timed rounds per variant (default 5)')
    parser.add_argument('--steps', type=int, default=20, help='steps per round (default 20)')
    parser.add_argument('--warmup', type=int, default=5, help='untimed steps per variant first (default 5)')
    parser.add_argument('--threads', default='1,2', help='intra-op thread counts to try (default 1,2)')
    parser.add_argument('--variants', default='fp32,channels_last,bf16',
                        help='comma-separated subset of fp32, channels_last, bf16')
    parser.add_argument('--markdown', type=Path, default=None, help='write a Markdown table here')
    parser.add_argument('--checkpoint', type=Path, default=None,
                        help='training checkpoint whose weights to start from (default: random init; a trained '
                             'net makes the first-loss precision figure meaningful)')
    parser.add_argument('--seed', type=int, default=0)


def _batch(cfg, seed: int):
    """A training-shaped batch: ``poses`` images and their mirrors, random poses in canonical gauge."""
    import numpy as np
    import torch
    from scipy.spatial.transform import Rotation

    n = 2 * cfg.poses
    rng = np.random.default_rng(seed)
    image = torch.from_numpy(rng.random((n, 1, cfg.input_size, cfg.input_size), dtype=np.float32))
    orbit = torch.from_numpy(Rotation.random(n, random_state=seed).as_matrix()).float()
    probe = torch.from_numpy(Rotation.random(n, random_state=seed + 1).as_matrix()).float()
    return image, orbit, probe


class _Step:
    """One variant's model, optimisers and step function (a copy of the same initial weights)."""

    def __init__(self, variant: str, cfg, model) -> None:
        import torch

        from echoposed_ros.training.optim import build_optimizers

        self.variant = variant
        self.cfg = cfg
        self.model = copy.deepcopy(model).train()
        if variant == 'channels_last':
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opts = build_optimizers(self.model, cfg)
        self.k = cfg.members

    def __call__(self, image, orbit, probe, step: int) -> float:
        import numpy as np
        import torch

        from echoposed_ros.training.loss import pair_loss
        from echoposed_ros.training.svd import project_to_so3

        cfg, k = self.cfg, self.k
        frozen = torch.zeros(k, dtype=torch.bool)
        frozen[step % k] = True
        if self.variant == 'channels_last':
            image = image.contiguous(memory_format=torch.channels_last)
        ctx = (torch.autocast('cpu', dtype=torch.bfloat16) if self.variant == 'bf16'
               else contextlib.nullcontext())
        with ctx:
            raw_v, raw_p = self.model(image, frozen)
        F_v, F_p = project_to_so3(raw_v.float()), project_to_so3(raw_p.float())
        loss_k, _, _ = pair_loss(F_v, F_p, orbit, probe, cfg.w_orbit, cfg.w_probe, cfg.loss,
                                 float(np.deg2rad(cfg.loss_scale_deg)), cfg.w_x)
        loss = loss_k[~frozen].sum()
        for o in self.opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in self.opts:
            o.step()
        return float(loss.detach())


def run(args: argparse.Namespace) -> dict:
    import torch

    from echoposed_ros.training.checkpoint import build_model
    from echoposed_ros.training.config import TrainConfig

    variants = [v.strip() for v in args.variants.split(',') if v.strip()]
    unknown = sorted(set(variants) - {'fp32', 'channels_last', 'bf16'})
    if unknown or 'fp32' not in variants:
        raise SystemExit(f'--variants {args.variants!r}: expected a subset of fp32, channels_last, bf16 '
                         'that includes fp32 (the baseline)')
    threads = [int(t) for t in args.threads.split(',')]
    torch.manual_seed(args.seed)
    if args.checkpoint is not None:
        from echoposed_ros.training.checkpoint import load_checkpoint
        cfg, model, _, _ = load_checkpoint(args.checkpoint)
    else:
        cfg = TrainConfig()
        model, _ = build_model(cfg)
    image, orbit, probe = _batch(cfg, args.seed)

    # Precision: each variant's first loss on the same weights and batch, against float32.
    first = {v: _Step(v, cfg, model)(image, orbit, probe, 1) for v in variants}
    steppers = {(v, t): _Step(v, cfg, model) for v in variants for t in threads}
    for (_, t), s in steppers.items():
        torch.set_num_threads(t)
        for i in range(args.warmup):
            s(image, orbit, probe, i)
    times: dict[tuple[str, int], list[float]] = {key: [] for key in steppers}
    for r in range(args.rounds):
        for key, s in steppers.items():
            torch.set_num_threads(key[1])
            t0 = time.perf_counter()
            for i in range(args.steps):
                s(image, orbit, probe, r * args.steps + i)
            times[key].append((time.perf_counter() - t0) / args.steps * 1e3)
    base = {t: statistics.median(times[('fp32', t)]) for t in threads}
    base1 = base[threads[0]]
    rows = []
    for (v, t), ms in times.items():
        med = statistics.median(ms)
        rows.append({'variant': v, 'threads': t, 'median_ms': med, 'min_ms': min(ms),
                     'steps_per_s': 1e3 / med, 'ratio': base1 / med,
                     'loss_rel_diff': abs(first[v] - first['fp32']) / abs(first['fp32'])})
    doc = {
        'config': {'members': cfg.members, 'poses': cfg.poses, 'images_per_step': 2 * cfg.poses,
                   'input_size': cfg.input_size, 'widths': list(cfg.widths)},
        'baseline': f'fp32 at {threads[0]} thread(s)',
        'weights': str(args.checkpoint) if args.checkpoint else 'random init',
        'rows': rows, 'rounds': args.rounds, 'steps_per_round': args.steps,
        'torch': torch.__version__, 'machine': f'{platform.machine()}, {os.cpu_count()} cores',
        'load_average': list(os.getloadavg()),
        'date': datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC'),
    }
    if getattr(args, 'markdown', None):
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(doc))
    return doc


def summary(doc: dict) -> str:
    """One line: every variant's steps/s and its ratio against the baseline."""
    parts = [f"{r['variant']}@{r['threads']}t {r['steps_per_s']:.2f} steps/s ({r['ratio']:.2f}x)" for r in doc['rows']]
    return 'train step: ' + ', '.join(parts) + f" (baseline {doc['baseline']})"


def markdown(doc: dict) -> str:
    c = doc['config']
    lines = ['# Training step speed (benchmarks/bench_train_step.py)', '',
             f"{c['images_per_step']} images of {c['input_size']} px, K = {c['members']}; weights: {doc['weights']}; "
             f"torch {doc['torch']}; {doc['machine']}; {doc['date']}; load average {doc['load_average'][0]:.1f} at "
             f"the end; {doc['rounds']} timed passes of {doc['steps_per_round']} steps; "
             f"ratio against {doc['baseline']}.",
             '',
             '| variant | threads | median ms / step | steps / s | ratio | first-loss rel. diff |',
             '| --- | --- | --- | --- | --- | --- |']
    for r in doc['rows']:
        lines.append(f"| {r['variant']} | {r['threads']} | {r['median_ms']:.1f} | {r['steps_per_s']:.2f} | "
                     f"{r['ratio']:.2f} | {r['loss_rel_diff']:.1e} |")
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', type=Path, default=None, help='write the figures here')
    add_arguments(parser)
    args = parser.parse_args(argv)
    doc = run(args)
    print(markdown(doc))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
