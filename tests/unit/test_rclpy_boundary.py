"""The math and the simulator never import ROS: geometry, estimator, policy, eval, config and
echoposed_sim load in a plain Python without rclpy, ROS messages or rosidl.

Each module is imported in a fresh interpreter in turn; a finder on ``sys.meta_path`` notes every
ROS module asked for with the chain of modules that were executing (outermost first), so a failure
names the import path that pulled ROS in, not just the module that ended up in ``sys.modules``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

#: Packages (and top-level modules) that must stay ROS-free, every submodule included.
ROS_FREE = ('echoposed_ros.errors', 'echoposed_ros.paths', 'echoposed_ros.geometry', 'echoposed_ros.estimator',
            'echoposed_ros.policy', 'echoposed_ros.eval', 'echoposed_ros.config', 'echoposed_sim')

PROBE = r'''
import importlib, importlib.abc, json, pkgutil, sys

def is_ros(name):
    top = name.split(".")[0]
    return (top.startswith(("rcl", "rosidl", "rmw", "launch_ros", "ament_index"))
            or top.endswith(("_msgs", "_srvs", "_interfaces")))

def chain():
    """The modules executing now (outermost first), and the innermost caller's function and line."""
    frame, mods, where = sys._getframe(2), [], None
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(("importlib", "_frozen_importlib")):
            if where is None:
                where = f"{name}:{frame.f_code.co_name}:{frame.f_lineno}"
            if frame.f_code.co_name == "<module>" and name != "__main__":
                mods.append(name)
        frame = frame.f_back
    return mods[::-1], where

class Watch(importlib.abc.MetaPathFinder):
    def __init__(self):
        self.seen = []
    def find_spec(self, name, path=None, target=None):
        if is_ros(name) and name.split(".")[0] == name:
            self.seen.append((name, *chain()))
        return None

watch = Watch()
sys.meta_path.insert(0, watch)
report = {"modules": 0, "offenders": []}

def load(name):
    """Import ``name`` (parents first), note any ROS module it brought in, then its submodules."""
    before, start = set(sys.modules), len(watch.seen)
    module = importlib.import_module(name)
    report["modules"] += 1
    pulled = sorted(m for m in set(sys.modules) - before if is_ros(m))
    if pulled or len(watch.seen) > start:
        report["offenders"].append({"module": name, "pulled": pulled, "asked": watch.seen[start:]})
    for info in pkgutil.iter_modules(getattr(module, "__path__", []), name + "."):
        load(info.name)

for root in json.loads(sys.argv[1]):
    load(root)
report["ros_in_sys_modules"] = sorted(m for m in sys.modules if is_ros(m))
print(json.dumps(report))
'''


def _probe(roots: tuple[str, ...]) -> dict:
    result = subprocess.run([sys.executable, '-c', PROBE, json.dumps(list(roots))], capture_output=True, text=True,
                            env=dict(os.environ), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _describe(offender: dict) -> str:
    pulled = sorted({m.split('.')[0] for m in offender['pulled']}) or 'no ROS module'
    lines = [f"importing {offender['module']} loaded {pulled}"]
    for name, mods, where in offender['asked']:
        lines.append(f"  {name} asked for by {where}; import chain: {' -> '.join(mods + [name])}")
    return '\n'.join(lines)


def test_math_simulator_and_config_never_import_ros():
    report = _probe(ROS_FREE)
    assert report['modules'] >= 40, report   # the walk found the packages' modules
    assert not report['offenders'], 'ROS modules pulled into ROS-free code:\n' + '\n'.join(
        _describe(o) for o in report['offenders'])
    assert report['ros_in_sys_modules'] == []


@pytest.mark.parametrize('root', ['echoposed_ros.nodes.convert'])
def test_the_probe_names_the_chain_that_pulls_ros_in(root):
    """The check can fail: a node helper imports ROS messages, and the report names how."""
    report = _probe((root,))
    assert report['offenders'], report
    text = _describe(report['offenders'][0])
    assert 'echoposed_ros.nodes.convert' in text and 'import chain: ' in text and '_msgs' in text, text
