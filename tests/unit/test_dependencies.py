"""What the code imports is what the package declares: requirements.txt (pip, this venv) and
package.xml (rosdep, a ROS 2 install), in both directions, and the README's pip line for the
packages rosdep has no key for."""
from __future__ import annotations

import ast
import re
import sys
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

from catkin_pkg.package import parse_package
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = {'echoposed_ros', 'echoposed_sim', 'echoposed_msgs'}
# Modules that run only when training (torch, onnx: the "training and tests only" pins); the adapt
# fine-tune is training too (the adapt node runs it as a child process).
TRAINING_ONLY = ('echoposed_ros/training/', 'echoposed_ros/adapt/finetune.py')
# Builds tiny ONNX models for tests and benchmarks with onnx (a test dependency); no node or
# runtime command imports it.
TEST_HELPERS = {'echoposed_ros/estimator/synthetic.py'}
# No wheels: a ROS 2 install provides them (package.xml declares them): the launch stack, and
# tf2_msgs (the sim node publishes /tf only where it is installed).
NOT_ON_PYPI = {'launch', 'launch_ros', 'tf2_msgs'}
# rosdep keys of the Python packages rosdep knows (the rest are pip-only, named in package.xml).
ROSDEP = {'numpy': 'python3-numpy', 'scipy': 'python3-scipy', 'pyyaml': 'python3-yaml',
          'matplotlib': 'python3-matplotlib', 'tqdm': 'python3-tqdm', 'nibabel': 'python3-nibabel',
          'pillow': 'python3-pil', 'numba': 'python3-numba'}
# Pinned at run time without being imported: the middleware rclpy loads by name.
LOADED_NOT_IMPORTED = {'ros-rmw-fastrtps-cpp'}


def _sources() -> list[Path]:
    return sorted([*ROOT.glob('echoposed_ros/**/*.py'), *ROOT.glob('sim/**/*.py'), *ROOT.glob('launch/*.py')])


def _third_party_imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in ``path`` (module and function level)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split('.')[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split('.')[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in PROJECT}


@cache
def _imports() -> dict[str, dict[str, set[str]]]:
    """{'runtime' | 'training': {import name: files}}."""
    out: dict[str, dict[str, set[str]]] = {'runtime': {}, 'training': {}}
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        kind = 'training' if rel.startswith(TRAINING_ONLY) or rel in TEST_HELPERS else 'runtime'
        for name in _third_party_imports(path):
            out[kind].setdefault(name, set()).add(rel)
    return out


@cache
def _pins() -> dict[str, dict[str, str]]:
    """requirements.txt by section: {'runtime' | 'build' | 'training': {canonical name: pin line}}."""
    sections: dict[str, dict[str, str]] = {'runtime': {}, 'build': {}, 'training': {}}
    current = None
    for line in (ROOT / 'requirements.txt').read_text().splitlines():
        if line.startswith('# ---'):
            current = ('runtime' if '(runtime)' in line else 'build' if 'build' in line else
                       'training' if 'training' in line else None)
            assert current, f'requirements.txt: section {line!r} is neither runtime, build nor training'
        elif line.strip() and not line.startswith('#'):
            assert current, f'requirements.txt: {line!r} comes before any section header'
            sections[current][canonicalize_name(Requirement(line).name)] = line
    return sections


def _distribution(import_name: str, pinned: dict[str, str]) -> str | None:
    """The pinned distribution that provides ``import_name`` (ROS wheels register two names for
    a package, e.g. rclpy and ros-rclpy; either counts)."""
    dists = {canonicalize_name(d) for d in _installed().get(import_name, [])}
    return next((d for d in sorted(dists) if d in pinned), None)


@cache
def _installed() -> dict[str, list[str]]:
    """packages_distributions() once (it reads every installed distribution: ~0.1 s a call)."""
    return packages_distributions()


@cache
def _package_xml() -> tuple[set[str], set[str]]:
    """(exec_depend names, pip-only names from the package.xml comment)."""
    package = parse_package(str(ROOT / 'package.xml'))
    text = (ROOT / 'package.xml').read_text()
    match = re.search(r'<!-- pip-only \([^)]*\): ([^>]*?) -->', text)
    assert match, 'package.xml: no "<!-- pip-only (...): a b c -->" comment naming the pip-only runtime packages'
    return {d.name for d in package.exec_depends}, set(match.group(1).split())


def test_every_runtime_import_is_pinned_in_a_runtime_section():
    runtime = _pins()['runtime']
    missing = {name: sorted(files)[:3] for name, files in _imports()['runtime'].items()
               if name not in NOT_ON_PYPI and _distribution(name, runtime) is None}
    assert not missing, f'imported at run time but not pinned under a (runtime) section of requirements.txt: {missing}'


def test_training_imports_are_pinned():
    pinned = {**_pins()['runtime'], **_pins()['training']}
    missing = {name: sorted(files)[:3] for name, files in _imports()['training'].items()
               if _distribution(name, pinned) is None}
    assert not missing, f'imported by training code but not pinned in requirements.txt: {missing}'


def test_every_runtime_pin_is_imported():
    imported = {_distribution(name, _pins()['runtime']) for name in _imports()['runtime']}
    unused = sorted(set(_pins()['runtime']) - imported - LOADED_NOT_IMPORTED)
    assert not unused, f'pinned as runtime in requirements.txt but imported by no runtime module: {unused}'


def _package_xml_key(import_name: str) -> str:
    dist = _distribution(import_name, _pins()['runtime'])
    if dist is None or dist.startswith('ros-') or import_name in NOT_ON_PYPI:
        return import_name  # a ROS package: its key is its name (rclpy, std_msgs, launch, ...)
    return ROSDEP.get(dist, dist)


def test_every_runtime_import_is_declared_in_package_xml():
    exec_depends, pip_only = _package_xml()
    declared = exec_depends | {canonicalize_name(n) for n in pip_only}
    missing = {name: _package_xml_key(name) for name in _imports()['runtime']
               if _package_xml_key(name) not in declared}
    assert not missing, f'imported at run time but not in package.xml (exec_depend or the pip-only comment): {missing}'


def test_package_xml_declares_nothing_unused():
    exec_depends, pip_only = _package_xml()
    keys = {_package_xml_key(name) for name in _imports()['runtime']} | {'echoposed_msgs'}
    unused = sorted((exec_depends | {canonicalize_name(n) for n in pip_only}) - keys)
    assert not unused, f'package.xml declares what no runtime module imports: {unused}'


def test_readme_pip_line_installs_the_pip_only_packages():
    _, pip_only = _package_xml()
    lines = [line for line in (ROOT / 'README.md').read_text().splitlines() if line.startswith('pip install ')]
    assert lines, 'README: no "pip install ..." line for the packages rosdep does not have'
    named = set(lines[0].split('#')[0].split()[2:])
    assert named == pip_only, f'README pip line {sorted(named)} != package.xml pip-only {sorted(pip_only)}'


def test_the_scanner_sees_lazy_imports(tmp_path):
    f = tmp_path / 'm.py'
    f.write_text('import os\nfrom . import x\n\ndef f():\n    import numba.core\n    from PIL import Image\n')
    assert _third_party_imports(f) == {'numba', 'PIL'}


def test_what_the_tests_and_benchmarks_import_is_installed_by_set_up():
    # requirements.txt, or constraints.txt for what those pins pull in: a fresh .venv has both
    held = {canonicalize_name(Requirement(line).name) for line in (ROOT / 'constraints.txt').read_text().splitlines()
            if line.strip() and not line.startswith('#')}
    pinned = {name for section in _pins().values() for name in section} | held
    local = {p.stem for folder in ('tests', 'benchmarks') for p in (ROOT / folder).rglob('*.py')}
    missing: dict[str, list[str]] = {}
    for path in sorted([*ROOT.glob('tests/**/*.py'), *ROOT.glob('benchmarks/*.py')]):
        for name in _third_party_imports(path) - local - NOT_ON_PYPI:
            if _distribution(name, dict.fromkeys(pinned, '')) is None:
                missing.setdefault(name, []).append(path.relative_to(ROOT).as_posix())
    assert not missing, f'imported by tests or benchmarks but installed by neither requirements.txt nor ' \
                        f'constraints.txt: {missing}'
