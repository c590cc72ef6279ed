"""Node tests: each test gets its own rclpy context and a background executor (``graph``).

The ROS domain and localhost-only discovery are set for the whole test process in
``tests/conftest.py``. Helpers live in ``ros_harness.py``.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from ros_harness import Graph


@pytest.fixture
def graph() -> Iterator[Graph]:
    g = Graph()
    try:
        yield g
    finally:
        g.shutdown()
