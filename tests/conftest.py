"""Test-wide settings.

DDS isolation: every pytest process takes a ROS 2 domain of its own (a lock file per domain
id, held for the whole run) and limits discovery to localhost, so two test runs on one
machine never hear each other and nothing leaves the machine. This happens at import time,
before any test imports rclpy.
"""
from __future__ import annotations

import fcntl
import os
import socket
import tempfile

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_LOCALHOST_ONLY", None)
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

_DOMAIN_LOCK = None


def _claim_domain() -> int:
    """Claim the first free domain id in 20..99 with an exclusive lock file."""
    global _DOMAIN_LOCK
    start = 20 + os.getpid() % 80
    for i in range(80):
        domain = 20 + (start - 20 + i) % 80
        fh = open(os.path.join(tempfile.gettempdir(), f"slowfast-ros-domain-{domain}.lock"), "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        _DOMAIN_LOCK = fh  # kept open (and locked) until the process exits
        return domain
    raise RuntimeError("no free ROS_DOMAIN_ID in 20..99 for this test run")


os.environ["ROS_DOMAIN_ID"] = str(_claim_domain())


@pytest.fixture
def free_port():
    """A callable returning a TCP port on 127.0.0.1 that is free right now."""
    def get() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    return get
