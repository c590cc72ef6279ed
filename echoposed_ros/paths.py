"""Where echoposed's shared files (config/, launch/, models/) live.

In a source checkout (editable install, tests) they are the folders of the repository; on a ROS 2
install they are ``share/echoposed`` found through the ament index.
"""
from __future__ import annotations

import os
from functools import cache
from pathlib import Path

__all__ = ['cache_dir', 'config_dir', 'launch_dir', 'models_dir', 'repo_root', 'share_dir']


def repo_root() -> Path | None:
    """The source checkout holding this package, or None when installed elsewhere."""
    root = Path(__file__).resolve().parent.parent
    package_xml = root / 'package.xml'
    if package_xml.is_file() and '<name>echoposed</name>' in package_xml.read_text():
        return root
    return None


@cache
def share_dir() -> Path:
    """``share/echoposed`` of the install, or the source checkout's root."""
    root = repo_root()
    if root is not None:
        return root
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory('echoposed'))


def config_dir() -> Path:
    return share_dir() / 'config'


def launch_dir() -> Path:
    return share_dir() / 'launch'


def models_dir() -> Path:
    return share_dir() / 'models'


def cache_dir() -> Path:
    """Where generated data (phantom patients) is cached: ``$ECHOPOSED_CACHE``, else ``cache/``
    in a source checkout (git-ignored), else ``~/.cache/echoposed``."""
    if os.environ.get('ECHOPOSED_CACHE'):
        return Path(os.environ['ECHOPOSED_CACHE'])
    root = repo_root()
    return root / 'cache' if root is not None else Path.home() / '.cache' / 'echoposed'
