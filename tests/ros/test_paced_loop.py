"""PacedLoop (the clock-paced loop of the other nodes) asks for SCHED_FIFO through
hardware.realtime: refused, it runs on as a normal thread and says so in one line."""
import os
import time

from slowfast_ros.node_util import PacedLoop


def test_paced_loop_without_permission_runs_and_warns_once(monkeypatch):
    def refuse(*_a, **_k):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    warnings, ticks = [], []
    loop = PacedLoop(200.0, lambda: ticks.append(1), rt_priority=50, warn=warnings.append).start()
    end = time.monotonic() + 30.0
    while len(ticks) < 10 and time.monotonic() < end:
        time.sleep(0.01)
    loop.stop()
    assert len(ticks) >= 10 and loop.failure is None
    assert loop.rt_active is False
    assert len(warnings) == 1 and "SCHED_FIFO 50" in warnings[0]
