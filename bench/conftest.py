"""Benchmark collection and fixtures (helpers live in roofline.py)."""
import pytest

import fastnn


def pytest_collect_file(file_path, parent):
    """Collects bench_*.py under bench/ (pyproject's pytest settings only know test_*.py).

    Paths named on the command line are collected by pytest itself; skip them here."""
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") \
            and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)


@pytest.fixture
def threads():
    """Sets fastnn's thread count (OpenMP and its OpenBLAS) for one test, then restores it."""
    before = fastnn.get_num_threads()
    yield fastnn.set_num_threads
    fastnn.set_num_threads(before)
