"""operator_node: a scripted operator that drives the sim through the teleop server exactly
as a headset would: the app's JSON posted to ``POST /unity`` at ``rate_hz``, clutch held
during each episode, hand poses computed from the sim expert's targets through the inverse
of the headset -> robot mapping. It reads the arm topics and ``sim/episode`` (the task plan)
like the expert node; nothing it does bypasses teleop_node or safety_node.
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time

import numpy as np
from rclpy.node import Node
from std_msgs.msg import String

from slowfast_ros import msgs, qos
from slowfast_ros.arm_io import ArmInputs, controller_states
from slowfast_ros.node_util import PacedLoop, declare_params, param, run_node
from teleop_tactar.retarget import RetargetConfig
from teleop_tactar.server_config import ServerConfig


@dataclasses.dataclass
class OperatorNodeParams:
    url_host: str = param("127.0.0.1", "teleop server host")
    port: int = param(ServerConfig().port, "teleop server port (teleop_node's server.port)")
    token: str = param("", "teleop server token, if it needs one")
    rate_hz: float = param(60.0, "hand messages per second (the app sends 30..60)")
    hands: list = param(["right"], "hand per arm, in the order of the episode's arms")
    scale: float = param(RetargetConfig().scale, "the teleop server's retarget.scale (TCP metres per hand metre)")
    max_input_age: float = param(0.1, "send the clutch released when a reading is older than this (s)")

    def __post_init__(self):
        if not 1.0 <= self.rate_hz <= 240.0:
            raise ValueError(f"rate_hz: {self.rate_hz} outside 1..240")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port: {self.port} outside 1..65535")
        if not 0.0 < self.max_input_age <= 1.0:
            raise ValueError(f"max_input_age: {self.max_input_age} outside (0, 1] s")


class OperatorNode(Node):
    def __init__(self):
        super().__init__("operator_node")
        self.p = declare_params(self, OperatorNodeParams)
        self._lock = threading.Lock()
        self._event = None
        self.op = None
        self.inputs: ArmInputs | None = None
        self.posted = self.failed = 0
        self._conn = None
        self.create_subscription(String, "sim/episode", self._on_episode, qos.EVENTS)
        self.loop = PacedLoop(self.p.rate_hz, self._tick, name="operator").start()

    def _on_episode(self, msg: String) -> None:
        try:
            ev = msgs.json_from_msg(msg)
        except ValueError:
            return
        with self._lock:
            self._event = ev

    def _post(self, body: dict) -> None:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.p.token:
            headers["X-Teleop-Token"] = self.p.token
        for _ in range(2):   # one retry on a dropped keep-alive connection
            try:
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(self.p.url_host, self.p.port, timeout=0.5)
                self._conn.request("POST", "/unity", data, headers)
                self._conn.getresponse().read()
                self.posted += 1
                return
            except (OSError, http.client.HTTPException):
                self._conn = None
        self.failed += 1

    def _tick(self) -> None:
        from teleop_tactar.operator import ScriptedOperator  # noqa: PLC0415

        with self._lock:
            ev, self._event = self._event, None
        if ev is not None:
            if ev.get("event") == "start":
                arms = tuple(ev["arms"])
                if self.inputs is None:
                    self.inputs = ArmInputs(self, arms)
                hands = dict(zip(arms, self.p.hands if len(self.p.hands) == len(arms) else ["left", "right"]))
                self.op = ScriptedOperator(ev["task"], ev.get("task_spec", {}), hands, self.p.scale)
                self.start = float(ev["start_stamp"])
                self.get_logger().info(f"episode {ev.get('episode')}: operator ready")
            else:
                if self.op is not None:
                    self._post(self.op.idle_message(time.time()))
                self.op = None
        if self.op is None or self.inputs is None:
            return
        status, states, newest = controller_states(self.inputs.snapshot(), self.start, self.p.max_input_age)
        if status == "waiting":
            return
        if status != "ok":       # before the episode, or stale input: clutch released, the arm holds
            self._post(self.op.idle_message(time.time()))
            return
        body = self.op.message(newest - self.start, states)
        if all(np.isfinite(h["wristPos"]).all() for k, h in body.items() if k.endswith("Hand")):
            self._post(body)

    def close(self) -> None:
        self.loop.stop()


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = OperatorNodeParams


def main(args=None) -> int:
    return run_node(OperatorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
