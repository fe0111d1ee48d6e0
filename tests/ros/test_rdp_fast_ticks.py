"""rdp_fast ticks where the data is, over real DDS: with ``tick_source=sensor`` each wrench
message starts one tick (the robot, the model and the helpers of test_rdp_nodes)."""
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped

from slowfast_ros import msgs, qos
from slowfast_app import stack
from tests.ros.test_rdp_nodes import Robot, _fast_overrides, _profile, diag_values, export  # noqa: F401 (fixture)

pytestmark = pytest.mark.dds


def test_fast_node_in_sensor_mode_ticks_once_per_wrench_message(export, tmp_path):
    """tick_source=sensor: each wrench message starts one tick, whose command is stamped with
    that message's capture time. So the commands carry distinct stamps (no reading used
    twice), each one a stamp the robot sent, and between the first and the last nearly every
    message has its command (none skipped; the slack is for what DDS may drop on a loaded
    machine, best effort in, keep-last out). A clock-paced loop at the same rate re-uses a
    reading whenever two ticks fall between two messages and skips one whenever two messages
    fall between two ticks."""
    from slowfast_ros.topic_probe import TopicProbe, wait_until

    probe = TopicProbe({"/diagnostics": DiagnosticArray})
    node = probe.node
    robot = Robot(node, fz=2.0)
    stamps: list[float] = []
    try:
        # safety.contact_timeout 0.5 s: the watchdog tick of a silent sensor (which re-uses the last
        # reading, to hold) stays out of the way of a robot thread slowed down by the load
        over = _fast_overrides(export, tick_source="sensor", **{"safety.contact_timeout": 0.5})
        with stack.Stack(_profile("rdp_fast"), over, log_dir=tmp_path) as s:
            sub = node.create_subscription(PoseStamped, "/right/target_tcp",
                                           lambda m: stamps.append(msgs.stamp_of(m)), qos.RECORD_SUB)
            assert wait_until(lambda: len(stamps) >= 200, timeout=60), s.last_line("rdp_fast")
            node.destroy_subscription(sub)
            diag = diag_values(probe, "rdp_fast")
            # a new statistics window (a benchmark's measurement): the counters start again
            t_reset = probe.now()
            assert probe.trigger("/rdp_fast/reset_statistics") == (True, "statistics window started")
            fresh = diag_values(probe, "rdp_fast")
            sent_since = sum(1 for t, _ in list(robot.wrench_log) if t >= t_reset - 0.05)
            assert s.procs["rdp_fast"].poll() is None, s.last_line("rdp_fast")
    finally:
        robot.stop = True
        probe.close()
    assert diag["tick_source"] == "sensor" and int(diag["ticks_clock"]) == 0
    assert float(fresh["window_s"]) < float(diag["window_s"])
    assert int(fresh["ticks_sensor"]) <= sent_since      # counted from the reset, not the start
    assert int(diag["ticks_sensor"]) == int(diag["trigger_readings"]) >= len(stamps)
    got = np.array(stamps)
    assert len(np.unique(got)) == len(got)                       # no reading used twice
    sent = np.array([t for t, _ in robot.wrench_log])
    i = np.searchsorted(sent, got).clip(1, len(sent) - 1)
    nearest = np.minimum(np.abs(sent[i] - got), np.abs(sent[i - 1] - got))
    assert nearest.max() < 1e-6                                  # each command names a message sent
    window = sent[(sent >= got.min()) & (sent <= got.max())]
    assert len(got) >= 0.8 * len(window), (len(got), len(window))   # none skipped (DDS losses aside)
