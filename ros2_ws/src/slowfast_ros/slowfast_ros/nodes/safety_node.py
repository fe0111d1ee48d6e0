"""safety_node: the safety filter as a node, between any command source and the arm.

A command source (teleoperation, a script, another planner) publishes
``<arm>/target_tcp_unsafe``; this node re-publishes it on ``<arm>/target_tcp`` at
``control_hz`` through the same filter the reactive fast loop uses: workspace box, speed
and acceleration limits, force back-off, NaN rejection, watchdogs on the command and the
contact data, and the latched ``safety/estop``. Every intervention is counted in
/diagnostics. With no fresh request it holds the last safe pose.

A lifecycle node (``slowfast_ros.lifecycle``): configure builds the filters and the output
loop, activate starts filtering from the measured pose, deactivate holds every arm where it is
measured and forwards nothing until activated again.
"""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from std_msgs.msg import Bool

from slowfast_ros import msgs, qos
from slowfast_ros.arm_io import (ArmInputs, EpisodeStarts, SafetyParams, filter_command, publish_hold,
                                 safety_report, sync_estop, topic)
from slowfast_ros.lifecycle import ArmCommander
from slowfast_ros.node_util import PacedLoop, declare_params, node_now, param, run_node


@dataclasses.dataclass
class SafetyNodeParams(SafetyParams):
    """SafetyParams (the arms to guard, output rate, the filter's limits) plus the input topic."""

    input_topic: str = param("target_tcp_unsafe", "per-arm topic of the unfiltered requests")

    def __post_init__(self):
        super().__post_init__()
        if self.input_topic in ("", "target_tcp"):
            raise ValueError(f"input_topic: {self.input_topic!r} must differ from the output 'target_tcp'")


class SafetyNode(ArmCommander):
    def __init__(self):
        super().__init__("safety_node")
        p = self.p = declare_params(self, SafetyNodeParams)
        self.control_period = 1.0 / p.control_hz
        self.inputs = ArmInputs(self, p.arms)
        self._lock = threading.Lock()
        self._requests: dict[str, tuple[float, np.ndarray, np.ndarray]] = {}
        self._estop: bool | None = None
        self.wrong_frame = 0
        self.filters: dict = {}
        self.loop: PacedLoop | None = None
        self.pubs = {a: self.create_publisher(PoseStamped, topic(a, "target_tcp"), qos.COMMAND) for a in p.arms}
        for a in p.arms:
            self.create_subscription(PoseStamped, topic(a, p.input_topic),
                                     lambda m, arm=a: self._on_request(arm, m), qos.COMMAND)
        self.create_subscription(Bool, "safety/estop", self._on_estop, qos.LATCHED)
        self.episodes = EpisodeStarts(self, p.episode_topic)   # a start restarts the filters
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.autostart(p.autostart)

    def _configure(self) -> None:
        from policy.safety import SafetyFilter  # noqa: PLC0415

        self.filters = {a: SafetyFilter(self.p.safety) for a in self.p.arms}
        self.loop = PacedLoop(self.p.control_hz, self._tick, name="safety").start()

    def _cleanup(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            self.loop = None

    def _hold(self) -> None:
        publish_hold(self, self.pubs, self.inputs.snapshot(), self._now(), self.p.world_frame)

    def _on_request(self, arm: str, msg: PoseStamped) -> None:
        if msg.header.frame_id not in ("", self.p.world_frame):
            self.wrong_frame += 1
            return
        stamp, pos, quat = msgs.pose_from_msg(msg)
        with self._lock:
            # the receipt time, on this node's clock, is what the command watchdog measures
            self._requests[arm] = (self._now(), pos, quat)

    def _on_estop(self, msg: Bool) -> None:
        with self._lock:
            self._estop = bool(msg.data)

    _now = node_now

    def _tick(self) -> None:
        state = self.command_state()   # publishes the hold itself on the tick after a deactivation
        if state == "idle":
            return
        now = self._now()
        snap = self.inputs.snapshot()
        with self._lock:
            requests, estop = dict(self._requests), self._estop
        if any(not np.isfinite(s.pose_stamp) for s in snap.values()):
            if state == "restart":
                self.restart_pending()   # restart on the first tick with a state
            return  # never command an arm whose state is unknown
        episode = self.episodes.check(snap)
        if episode == "wait":
            return  # the plant is being reset: command nothing until its state is from the new episode
        if episode == "restart" or state == "restart":
            with self._lock:
                self._requests.clear()          # requests from before the episode (or activation) are void
            requests = {}
            for arm, sf in self.filters.items():
                sf.reset(snap[arm].tcp_pos, snap[arm].tcp_quat)
        sync_estop(self.filters, estop, snap)
        for arm, s in snap.items():
            stamp, pos, quat = requests.get(arm, (None, None, None))
            out_pos, out_quat = filter_command(self.filters[arm], now, s, pos, quat, stamp)
            self.pubs[arm].publish(msgs.pose_msg(now, self.p.world_frame, out_pos, out_quat))

    def _publish_diagnostics(self) -> None:
        if self.loop is None:
            return
        values = {"rate_hz": self.loop.meter.rate(), "requests_wrong_frame": self.wrong_frame,
                  "active": self.active}
        safety_values, holding = safety_report(self.filters)
        values.update(safety_values)
        level = "warn" if holding or not self.active else "ok"
        self.diag_pub.publish(msgs.diagnostics_msg(self._now(), [msgs.diagnostic_status(
            "safety_node", values, level, "" if self.active else "inactive: holding")]))


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = SafetyNodeParams


def main(args=None) -> int:
    return run_node(SafetyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
