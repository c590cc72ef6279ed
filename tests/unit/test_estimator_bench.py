"""The estimator benchmark runs end to end at a tiny size: export, contract checks, figures."""
from __future__ import annotations

import json

import pytest


def test_bench_estimator_tiny(tmp_path, capsys):
    from echoposed_ros.cli import main

    out = tmp_path / 'bench.json'
    model = tmp_path / 'bench.onnx'
    rc = main(['bench', 'estimator', '--json', str(out), '--size', '32', '--members', '3', '--widths', '4,4,8,8',
               '--rounds', '1', '--repeats', '2', '--torch-repeats', '1', '--model-out', str(model)])
    assert rc == 0, capsys.readouterr().err
    r = json.loads(out.read_text())
    for key in ('median_ms', 'torch_median_ms', 'ratio', 'gflops'):
        assert r[key] > 0, key
    assert r['ratio'] == pytest.approx(r['torch_median_ms'] / r['median_ms'])
    assert r['config']['members'] == 3 and r['config']['size'] == 32
    # the exported file is a contract-conforming model and agrees with the PyTorch ensemble
    assert r['max_abs_diff_onnx_vs_torch'] < 1e-4
    from echoposed_ros.estimator import load_model
    info = load_model(model).info
    assert (info.members, info.input_height, info.input_width) == (3, 32, 32)
    assert 'estimator: K=3 on 32x32' in capsys.readouterr().out
