"""The world benchmark (benchmarks/bench_world.py) runs end to end at a tiny size through ``echoposed bench``."""
from __future__ import annotations

import json


def test_bench_world_tiny(tmp_path, capsys):
    from echoposed_ros.cli import main

    out = tmp_path / 'world.json'
    rc = main(['bench', 'world', '--json', str(out), '--cycles', '6', '--poses', '2', '--workspace-poses', '2'])
    assert rc == 0, capsys.readouterr().err
    r = json.loads(out.read_text())
    assert r['cycles'] == 6 and r['rate_hz'] == 30.0
    for world in ('arm', 'kinematic'):
        assert 0 < r[world]['median_ms'] <= r[world]['max_ms'], world
    assert r['accuracy']['poses'] == 2 and r['accuracy']['unreachable'] <= 2
    assert [w['poses'] for w in r['workspace']] == [2, 2]
    assert [(w['orbit_deg'], w['tilt_deg']) for w in r['workspace']] == [(25.0, 20.0), (30.0, 25.0)]
    text = capsys.readouterr().out
    assert 'arm       cycle: wall mean' in text and 'tracking over 2 training-range poses' in text


def test_the_simulator_package_holds_no_benchmark():
    import pkgutil

    import echoposed_sim
    names = [info.name for info in pkgutil.walk_packages(echoposed_sim.__path__, 'echoposed_sim.')]
    assert names and not [n for n in names if 'bench' in n.rsplit('.', 1)[-1]], names
