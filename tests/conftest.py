"""Shared fixtures: every test session keeps DDS on loopback and gets its own domain id."""

from __future__ import annotations

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _ros_environment() -> dict[str, str]:
    # Domain ids 1..100 are spread by process id so that parallel test runs never cross.
    domain = str(1 + os.getpid() % 100)
    return {
        'ROS_DOMAIN_ID': os.environ.get('RPL_TEST_DOMAIN_ID', domain),
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'FASTDDS_DEFAULT_PROFILES_FILE': str(REPO_ROOT / 'config' / 'fastdds_loopback.xml'),
        'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
    }


# Set before any test imports rclpy, and inherited by every child process a test starts.
os.environ.update(_ros_environment())


@pytest.fixture(scope='session')
def ros_env() -> dict[str, str]:
    """Environment for child processes: this session's loopback-only DDS settings."""
    return dict(os.environ)


@pytest.fixture(scope='session')
def repo_root() -> pathlib.Path:
    """Absolute path of the repository root."""
    return REPO_ROOT


@pytest.fixture
def one_torch_thread():
    """One torch intra-op thread for the test (restored after): on the shared 2-core
    machine two threads contend badly. Torch is imported only by the tests that use it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
