"""rdp_fast: the fast side of the Reactive Diffusion Policy (and the DP baseline's executor).

A dedicated thread paced by the clock at ``control_hz`` (200 Hz default, up to 1 kHz). Each
tick: take the freshest contact reading (wrench or tactile field, per the model), run the
reactive executor (chunk step aligned by the chunk's observation stamp, O(1) ONNX decoder
step, blended handover), pass each arm's target through the safety filter, publish
``<arm>/target_tcp`` stamped with the capture time of the contact reading it used.

Subscribes ``policy/latent_chunk`` (JointTrajectory, see msgs.chunk_msg), the arm topics,
and ``safety/estop`` (latched Bool). Callbacks only store; the loop never waits on the slow
policy. Diagnostics (1 Hz): loop rate, period error, decode time, step index, chunk
counts and rejections, safety interventions.
"""
from __future__ import annotations

import dataclasses
import threading
from collections import deque
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from policy.fileio import read_json
from policy.reactive import ReactiveExecutor
from policy.safety import SafetyFilter
from policy.serving import FastController
from slowfast_ros import msgs, qos
from slowfast_ros.arm_io import ArmInputs, EpisodeStarts, SafetyParams, publish_hold, safety_report, topic
from slowfast_ros.node_util import PacedLoop, declare_params, param, run_node


@dataclasses.dataclass
class RdpFastParams(SafetyParams):
    """SafetyParams (arms in the model's arm order, control_hz up to 1 kHz, the filter's
    limits) plus the executor's own parameters."""

    export_dir: str = param("", "folder written by `slowfast export` (decoder_step.onnx + runtime.json)")
    command_timeout: float = param(0.05, "hold when the executor produced no target for this long (s)")
    blend_s: float = param(0.1, "handover blend window (s)")
    chunk_pose_tolerance: float = param(0.01, "max |stamp difference| when looking up a chunk's start pose (s)")
    decoder_threads: int = param(1, "onnxruntime intra-op threads for the decoder step")
    rt_priority: int = param(0, "SCHED_FIFO priority of the control thread, 1..98 (0 = normal scheduling; "
                                "needs CAP_SYS_NICE or an rtprio limit, e.g. a PREEMPT_RT robot PC)")

    def __post_init__(self):
        super().__post_init__()
        if not self.export_dir:
            raise ValueError("export_dir: required (a folder written by `slowfast export`)")


class RdpFast(Node):
    def __init__(self):
        super().__init__("rdp_fast")
        p = self.p = declare_params(self, RdpFastParams)
        meta_path = Path(p.export_dir) / "runtime.json"
        if not meta_path.is_file():
            raise ValueError(f"export_dir: {p.export_dir} has no runtime.json (run `slowfast export CKPT --out DIR`)")
        meta = read_json(meta_path)
        shapes = meta.get("shapes", {})
        if int(shapes.get("num_arms", 0)) != len(p.arms):
            raise ValueError(f"arms: the model drives {shapes.get('num_arms')} arm(s), got {len(p.arms)} ({p.arms})")
        self.contact_kind = meta.get("contact", "wrench")
        self.model_type = meta["model_type"]
        decoder = None
        if "decoder_step" in meta.get("files", {}):
            from policy.rdp.runtime import DecoderRuntime  # noqa: PLC0415
            decoder = DecoderRuntime(p.export_dir, threads=p.decoder_threads)
        elif self.model_type != "dp":
            raise ValueError(f"export_dir: a {self.model_type!r} export has no decoder_step.onnx")
        fps = float(meta.get("fps") or 0.0)
        if fps <= 0:
            raise ValueError(f"export_dir: runtime.json gives no dataset fps ({meta.get('fps')!r})")
        self.reactive = ReactiveExecutor(decoder, int(meta["horizon"]), 1.0 / fps, p.blend_s, num_arms=len(p.arms))
        self.safety = {a: SafetyFilter(p.safety_config()) for a in p.arms}
        self.controller = FastController(self.reactive, self.safety, self.contact_kind,
                                         int(shapes["contact_raw_dim"]), p.chunk_pose_tolerance)

        self.inputs = ArmInputs(self, p.arms, history_s=3.0, polled=True, tactile=self.contact_kind == "tactile")
        self._lock = threading.Lock()
        self._pending_chunk = None
        self._estop: bool | None = None
        self.chunks_received = 0
        self.bad_chunks = 0
        self.decode_us: deque[float] = deque(maxlen=2000)
        self.contact_to_command_ms: deque[float] = deque(maxlen=4000)
        self._last_now: float | None = None
        self.clock_jumps = 0
        self.pubs = {a: self.create_publisher(PoseStamped, topic(a, "target_tcp"), qos.COMMAND) for a in p.arms}
        self.create_subscription(JointTrajectory, "policy/latent_chunk", self._on_chunk, qos.COMMAND)
        self.create_subscription(Bool, "safety/estop", self._on_estop, qos.LATCHED)
        self.episodes = EpisodeStarts(self, p.episode_topic)   # a start resets executor and filters
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.loop = PacedLoop(p.control_hz, self._tick, name="rdp-fast", rt_priority=p.rt_priority).start()
        self.get_logger().info(f"{self.model_type} executor at {p.control_hz:g} Hz, contact={self.contact_kind}, "
                               f"chunk {meta['horizon']} steps at {fps:g} Hz, providers "
                               f"{getattr(decoder, 'providers', ['none (open loop)'])}")

    # -------------------------------------------------------------- callbacks: store only

    def _on_chunk(self, msg: JointTrajectory) -> None:
        try:
            parsed = msgs.chunk_from_msg(msg)
        except ValueError as exc:
            self.bad_chunks += 1
            self.get_logger().warning(f"policy/latent_chunk rejected: {exc}", throttle_duration_sec=1.0)
            return
        with self._lock:
            self._pending_chunk = parsed
            self.chunks_received += 1

    def _on_estop(self, msg: Bool) -> None:
        with self._lock:
            self._estop = bool(msg.data)

    # -------------------------------------------------------------- the control thread

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _tick(self) -> None:

        now = self._now()
        jumped = self._last_now is not None and not (0.0 <= now - self._last_now <= 0.5)
        self._last_now = now
        if jumped:
            # The clock went backwards or leapt: every chunk's alignment is void. Drop them
            # and hold (the safety filter holds when no target comes) until a new chunk.
            self.clock_jumps += 1
            self.reactive.reset()
            self.get_logger().warning("clock jump: chunks dropped, holding", throttle_duration_sec=1.0)
        self.inputs.poll()  # the freshest readings, taken in this thread
        snap = self.inputs.snapshot()
        if any(not np.isfinite(s.pose_stamp) for s in snap.values()):
            return  # no robot state yet: publish nothing
        with self._lock:
            pending, self._pending_chunk = self._pending_chunk, None
            estop = self._estop
        episode = self.episodes.check(snap)
        if episode == "wait":
            return   # a new episode: publish nothing until the arm's state is from it
        if episode == "restart":
            self.controller.restart(snap)   # forget every chunk, filters from where the arms are
        res = self.controller.tick(now, snap, pending, estop, self.inputs)
        if res.rejected:
            self.get_logger().warning(f"chunk rejected: {res.rejected}", throttle_duration_sec=1.0)
        if res.decode_s is not None:
            self.decode_us.append(res.decode_s * 1e6)
        for arm, (pos, quat) in res.commands.items():
            stamp = res.contact_stamp if np.isfinite(res.contact_stamp) else snap[arm].pose_stamp
            self.pubs[arm].publish(msgs.pose_msg(stamp, self.p.world_frame, pos, quat))
        if res.produced:
            # From the capture of the contact reading to the publish of the command that used it.
            self.contact_to_command_ms.append((self._now() - res.contact_stamp) * 1e3)

    # -------------------------------------------------------------- diagnostics

    def _publish_diagnostics(self) -> None:
        pe = self.loop.period_error_ms()
        dec = np.array(self.decode_us) if self.decode_us else np.array([np.nan])
        lat = np.array(self.contact_to_command_ms) if self.contact_to_command_ms else np.array([np.nan])
        values = {"loop_rate_hz": self.loop.meter.rate(), "period_error_ms_p50": pe["p50"],
                  "realtime_scheduling": self.loop.rt_active,
                  "contact_to_command_ms_p50": float(np.percentile(lat, 50)),
                  "contact_to_command_ms_p99": float(np.percentile(lat, 99)),
                  "period_error_ms_p99": pe["p99"], "overruns": self.loop.overruns,
                  "tick_us_p50": float(np.percentile(dec, 50)), "tick_us_p99": float(np.percentile(dec, 99)),
                  "step_index": self.reactive.last_step_index, "chunks_received": self.chunks_received,
                  "chunks_malformed": self.bad_chunks, "clock_jumps": self.clock_jumps,
                  "sensor_messages_rejected": self.inputs.rejected}
        values.update({f"chunks_rejected/{k}": v for k, v in self.reactive.rejected.items()})
        if self.contact_kind == "tactile":    # lost markers filled or fields refused (held)
            for arm, mf in self.controller.markers.items():
                values.update({f"tactile_markers/{arm}/{k}": v for k, v in mf.counts.items()})
        safety_values, holding = safety_report(self.safety)
        values.update(safety_values)
        level = "warn" if holding else "ok"
        if self.loop.failure is not None:
            level = "error"
            values["failure"] = repr(self.loop.failure)
        status = msgs.diagnostic_status("rdp_fast", values, level, "holding" if level == "warn" else "")
        self.diag_pub.publish(msgs.diagnostics_msg(self._now(), [status]))

    def close(self) -> None:
        """Stop the loop, then command every arm to stay where it is measured (the robot's
        controller keeps the last target it got: that must not be a point mid-chunk)."""
        self.loop.stop()
        publish_hold(self, self.pubs, self.inputs.snapshot(), self._now(), self.p.world_frame)
        self.inputs.close()


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = RdpFastParams


def main(args=None) -> int:
    return run_node(RdpFast, args)


if __name__ == "__main__":
    raise SystemExit(main())
