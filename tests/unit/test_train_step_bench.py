"""The training-step benchmark runs end to end (one tiny round): every variant timed, figures sane."""
from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_bench_train_step_tiny(tmp_path, capsys):
    from echoposed_ros.cli import main

    out, md = tmp_path / 'step.json', tmp_path / 'step.md'
    rc = main(['bench', 'train-step', '--json', str(out), '--markdown', str(md), '--rounds', '1', '--steps', '1',
               '--warmup', '0', '--threads', '1'])
    assert rc == 0, capsys.readouterr().err
    r = json.loads(out.read_text())
    rows = {row['variant']: row for row in r['rows']}
    assert set(rows) == {'fp32', 'channels_last', 'bf16'}
    assert rows['fp32']['ratio'] == pytest.approx(1.0)
    assert all(row['median_ms'] > 0 and row['threads'] == 1 for row in rows.values())
    # float32 variants compute the same loss; bf16 differs, but only by its precision
    assert rows['channels_last']['loss_rel_diff'] < 1e-4
    assert 0 <= rows['bf16']['loss_rel_diff'] < 0.05
    assert r['config']['images_per_step'] == 32 and r['config']['members'] == 5
    assert '| bf16 | 1 |' in md.read_text()
    assert 'train step: fp32@1t' in capsys.readouterr().out


def test_bench_train_step_rejects_a_baseline_free_variant_list(tmp_path):
    from echoposed_ros.cli import main

    with pytest.raises(SystemExit, match='fp32'):
        main(['bench', 'train-step', '--variants', 'bf16', '--rounds', '1', '--steps', '1', '--threads', '1'])
