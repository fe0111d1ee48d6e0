"""expert_node: the scripted, force-aware expert of a sim task as a separate ROS 2 node.

It sees only what a policy on a robot sees: <arm>/tcp_pose, <arm>/tcp_wrench,
<arm>/tactile/markers, and the task plan from the latched ``sim/episode`` start event. Its
control loop runs in its own thread, paced by the clock, and publishes <arm>/target_tcp,
stamped with the capture time of the newest reading it used.
"""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from std_msgs.msg import String

from sim import TASKS
from slowfast_ros import msgs, qos
from slowfast_ros.arm_io import ArmInputs, controller_states, topic
from slowfast_ros.node_util import PacedLoop, declare_params, param, run_node


@dataclasses.dataclass
class ExpertNodeParams:
    task: str = param("wipe", "task whose expert runs: wipe | lift")
    control_hz: float = param(200.0, "control loop rate (Hz)")
    world_frame: str = param("world", "frame of the commanded poses")
    max_input_age: float = param(0.05, "hold (publish nothing) when a reading is older than this (s)")

    def __post_init__(self):
        if not (1.0 <= self.control_hz <= 1000.0):
            raise ValueError(f"control_hz: {self.control_hz} outside 1..1000")
        if not (0.0 < self.max_input_age <= 1.0):
            raise ValueError(f"max_input_age: {self.max_input_age} outside (0, 1] s")


class ExpertNode(Node):
    def __init__(self):
        super().__init__("expert_node")

        self.p: ExpertNodeParams = declare_params(self, ExpertNodeParams)
        if self.p.task not in TASKS:
            raise ValueError(f"task: unknown task '{self.p.task}' (choose from {', '.join(TASKS)})")
        self._lock = threading.Lock()
        self.expert = None
        self.episode_start = float("nan")
        self.inputs: ArmInputs | None = None
        self.target_pubs: dict[str, object] = {}
        self.stale_holds = 0
        self.create_subscription(String, "sim/episode", self._on_episode, qos.EVENTS)
        self.loop = PacedLoop(self.p.control_hz, self._tick, name="expert-loop").start()

    def _on_episode(self, msg: String) -> None:
        from sim import make_expert  # noqa: PLC0415

        try:
            event = msgs.json_from_msg(msg)
        except ValueError as exc:
            self.get_logger().warning(f"sim/episode: {exc}")
            return
        if event.get("event") != "start":
            with self._lock:
                self.expert = None  # episode over: stop commanding
            return
        if event.get("task") != self.p.task:
            self.get_logger().error(f"sim runs task '{event.get('task')}', this expert is for '{self.p.task}'")
            return
        arms = tuple(event["arms"])
        if self.inputs is None:
            self.inputs = ArmInputs(self, arms)
            for arm in arms:
                self.target_pubs[arm] = self.create_publisher(PoseStamped, topic(arm, "target_tcp"), qos.COMMAND)
        else:
            self.inputs.reset()
        expert = make_expert(self.p.task, event.get("task_spec", {}))
        expert.reset()
        with self._lock:
            self.expert = expert
            self.episode_start = float(event["start_stamp"])
        self.get_logger().info(f"episode {event['episode']}: expert reset")

    def _tick(self) -> None:
        with self._lock:
            expert, start = self.expert, self.episode_start
        if expert is None or self.inputs is None:
            return
        status, states, newest = controller_states(self.inputs.snapshot(), start, self.p.max_input_age)
        if status == "stale":
            self.stale_holds += 1
        if status != "ok":
            return  # no input yet, the hold before the episode, or stale input: send nothing
        targets = expert.act(newest - start, states)
        for arm, (pos, quat) in targets.items():
            if not (np.isfinite(pos).all() and np.isfinite(quat).all()):
                self.get_logger().error("expert produced a non-finite target; holding", throttle_duration_sec=1.0)
                continue
            self.target_pubs[arm].publish(msgs.pose_msg(newest, self.p.world_frame, pos, quat))

    def close(self) -> None:
        self.loop.stop()


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = ExpertNodeParams


def main(args=None) -> int:
    return run_node(ExpertNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
