"""Make a Python environment an ament prefix that holds echoposed, laid out as colcon installs it.

    python scripts/ament_prefix.py PREFIX

Reads ``setup.py`` (its ``setup()`` call is captured, not run) and makes, under PREFIX:

- every ``data_files`` entry as a symlink to the work-tree file (``share/ament_index/resource_index/
  packages/echoposed``, ``share/echoposed/package.xml``, ``share/echoposed/{launch,config,models}/*``),
  so an edited launch or config file takes effect, as the editable install does for the Python code;
- ``lib/echoposed/<script>`` for every console script of ``setup.py``, a symlink to
  ``PREFIX/bin/<script>`` (where pip's editable install puts them; ``ros2 run`` and launch_ros look
  in ``lib/<package>``).

Files are linked one by one (as ``colcon build --symlink-install`` does), not whole folders: tools
that search a package's share folder with ``os.walk`` do not enter a linked folder. Links it made
before for files no longer listed are removed; other files are never touched. Prints one line.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def setup_arguments(root: Path = ROOT) -> dict[str, Any]:
    """The keyword arguments ``setup.py`` passes to ``setup()`` (run in ``root``, setup() not called)."""
    import setuptools

    captured: dict[str, Any] = {}
    original = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    cwd = Path.cwd()
    try:
        os.chdir(root)
        code = compile((root / 'setup.py').read_text(), str(root / 'setup.py'), 'exec')
        exec(code, {'__name__': '__main__', '__file__': str(root / 'setup.py')})
    finally:
        os.chdir(cwd)
        setuptools.setup = original
    if not captured:
        raise SystemExit(f'{root / "setup.py"}: setup() was not called')
    return captured


def planned_links(prefix: Path, root: Path = ROOT) -> dict[Path, Path]:
    """{link under prefix: its target} for the data files and the console scripts."""
    kwargs = setup_arguments(root)
    package = kwargs['name']
    links: dict[Path, Path] = {}
    for folder, files in kwargs.get('data_files', []):
        for name in files:
            links[prefix / folder / Path(name).name] = (root / name).resolve()
    for line in kwargs.get('entry_points', {}).get('console_scripts', []):
        script = line.split('=', 1)[0].strip()
        links[prefix / 'lib' / package / script] = prefix / 'bin' / script
    return links


def _managed_folders(links: dict[Path, Path], prefix: Path) -> set[Path]:
    """Folders whose stale symlinks are ours to remove (not the shared resource index)."""
    index = prefix / 'share' / 'ament_index'
    return {link.parent for link in links if index not in link.parents}


def install(prefix: Path, root: Path = ROOT) -> tuple[int, int]:
    """Create the links; returns (links made or kept, stale links removed)."""
    links = planned_links(prefix, root)
    missing = sorted(str(target) for target in links.values() if not target.exists())
    if missing:
        raise SystemExit('ament prefix: missing (expected after the editable install): ' + ', '.join(missing))
    removed = 0
    for folder in _managed_folders(links, prefix):
        if folder.is_symlink():   # a folder linked whole by an older layout
            folder.unlink()
        for entry in folder.iterdir() if folder.is_dir() else ():
            if entry.is_symlink() and entry not in links:
                entry.unlink()
                removed += 1
    for link, target in links.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.is_file():
            if link.is_symlink() and Path(os.readlink(link)) == target:
                continue
            link.unlink()
        link.symlink_to(target)
    return len(links), removed


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.split('\n\n')[1].strip(), file=sys.stderr)
        return 2
    prefix = Path(argv[0]).absolute()
    made, removed = install(prefix)
    stale = f', {removed} stale removed' if removed else ''
    print(f'ament prefix {prefix}: {made} links (share/, lib/echoposed/){stale}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
