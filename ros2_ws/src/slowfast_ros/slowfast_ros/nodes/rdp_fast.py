"""rdp_fast: the fast side of the Reactive Diffusion Policy (and the DP baseline's executor).

A dedicated control thread (:class:`hardware.realtime.TickLoop`) ticks where the data is:
when the contact sensor the policy reads (wrench or tactile field) delivers at least 95 % of
``control_hz``, each tick is triggered by the arrival of a reading (one tick per reading,
phase-locked: none used twice, none skipped); otherwise it is paced by the monotonic clock
at ``control_hz`` (200 Hz default, up to 1 kHz) with the freshest reading (``tick_source``).
Each tick: take the readings (the thread's own rcl wait set and raw ``take``, no executor),
run the reactive executor (chunk step aligned by the chunk's observation stamp, O(1) ONNX
decoder step, blended handover), pass each arm's target through the safety filter, publish
``<arm>/target_tcp`` (packed CDR) stamped with the capture time of the contact reading it used.
The thread runs SCHED_FIFO at ``rt_priority`` on core ``cpu`` with the memory locked when
permitted (one warning when not).

Subscribes ``policy/latent_chunk`` (JointTrajectory, see msgs.chunk_msg) and ``safety/estop``
(latched Bool) through the executor (callbacks only store; the loop never waits on the slow
policy), the arm topics in the control thread. Diagnostics (1 Hz): tick source, loop rate,
period error, where a tick's time goes (input, executor, safety, publish, total: p50/p99),
contact-to-command latency, real-time state, step index, chunk counts and rejections,
safety interventions.

A lifecycle node (``slowfast_ros.lifecycle``): configure loads the export and starts the
control thread, activate commands the arms (every chunk forgotten, filters restarted from the
measured pose), deactivate holds every arm where it is measured and commands nothing until
activated again, cleanup stops the thread and releases the model.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
import rclpy
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from hardware.realtime import MODES, TickLoop
from policy.rdp.contract import contact_kind
from policy.reactive import ReactiveExecutor
from policy.safety import SafetyConfig, SafetyFilter
from policy.serving import FastController
from slowfast_data.fileio import read_json
from slowfast_ros import msgs, qos
from slowfast_ros.arm_io import (ArmInputs, EpisodeStarts, RawPosePublisher, SafetyParams, publish_hold,
                                 safety_report, topic)
from slowfast_ros.lifecycle import ArmCommander
from slowfast_ros.node_util import declare_params, param, run_node

#: where a tick's time goes, besides the loop's own "input" and "total"
PHASES = ("executor", "decode", "safety", "publish", "contact_to_command", "arrival_to_tick")


@dataclasses.dataclass
class RdpFastParams(SafetyParams):
    """SafetyParams (arms in the model's arm order, control_hz up to 1 kHz, the filter's
    limits) plus the executor's own parameters."""

    export_dir: str = param("", "folder written by `slowfast export` (decoder_step.onnx + runtime.json)")
    safety: SafetyConfig = param(SafetyConfig(command_timeout=0.05), "the safety filter's limits (command_timeout: "
                                 "hold when the executor produced no target for this long)")
    blend_s: float = param(0.1, "handover blend window (s)")
    chunk_pose_tolerance: float = param(0.01, "max |stamp difference| when looking up a chunk's start pose (s)")
    decoder_threads: int = param(1, "onnxruntime intra-op threads for the decoder step")
    rt_priority: int = param(0, "SCHED_FIFO priority of the control thread, 1..98 (0 = normal scheduling; "
                                "needs CAP_SYS_NICE or an rtprio limit, e.g. a PREEMPT_RT robot PC)")
    cpu: int = param(-1, "core the control thread is pinned to (-1 = none)")
    lock_memory: bool = param(True, "with rt_priority or cpu set: mlockall(MCL_CURRENT|MCL_FUTURE), no page "
                                    "fault in a tick (needs CAP_IPC_LOCK or an unlimited memlock limit)")
    tick_source: str = param("auto", "what starts a tick: 'sensor' (each reading of the contact topic the policy "
                                     "reads), 'clock' (control_hz, freshest reading), 'auto' (sensor while it "
                                     "delivers >= 95 % of control_hz, else clock)")

    def __post_init__(self):
        super().__post_init__()
        if not self.export_dir:
            raise ValueError("export_dir: required (a folder written by `slowfast export`)")
        if self.tick_source not in MODES:
            raise ValueError(f"tick_source: {self.tick_source!r} is not one of {', '.join(MODES)}")
        if not (0 <= self.rt_priority <= 98):
            raise ValueError(f"rt_priority: {self.rt_priority} outside 0..98")
        if self.cpu < -1:
            raise ValueError(f"cpu: {self.cpu} is not a core index (or -1 for none)")


class RdpFast(ArmCommander):
    def __init__(self):
        super().__init__("rdp_fast")
        p = self.p = declare_params(self, RdpFastParams)
        self.control_period = 1.0 / p.control_hz
        self.loop = None
        self.autostart(p.autostart)

    def _configure(self) -> None:
        p = self.p
        meta_path = Path(p.export_dir) / "runtime.json"
        if not meta_path.is_file():
            raise ValueError(f"export_dir: {p.export_dir} has no runtime.json (run `slowfast export CKPT --out DIR`)")
        meta = read_json(meta_path)
        shapes = meta.get("shapes", {})
        if int(shapes.get("num_arms", 0)) != len(p.arms):
            raise ValueError(f"arms: the model drives {shapes.get('num_arms')} arm(s), got {len(p.arms)} ({p.arms})")
        self.contact_kind = contact_kind(meta)
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
        self.safety = {a: SafetyFilter(p.safety) for a in p.arms}
        self.controller = FastController(self.reactive, self.safety, self.contact_kind,
                                         int(shapes["contact_raw_dim"]), p.chunk_pose_tolerance)

        tactile = self.contact_kind == "tactile"
        self.inputs = ArmInputs(self, p.arms, history_s=3.0, polled=True, tactile=tactile,
                                trigger="tactile" if tactile else "wrench")
        self._lock = threading.Lock()
        self._pending_chunk = None
        self._estop: bool | None = None
        self.chunks_received = 0
        self.bad_chunks = 0
        self._last_now: float | None = None
        self.clock_jumps = 0
        self.pubs = {a: self.create_publisher(PoseStamped, topic(a, "target_tcp"), qos.COMMAND) for a in p.arms}
        self._raw_pubs = [(a, RawPosePublisher(self.pubs[a], p.world_frame)) for a in p.arms]
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        for entity in (*self.pubs.values(), self.diag_pub,
                       self.create_subscription(JointTrajectory, "policy/latent_chunk", self._on_chunk, qos.COMMAND),
                       self.create_subscription(Bool, "safety/estop", self._on_estop, qos.LATCHED),
                       self.create_timer(1.0, self._publish_diagnostics)):
            self.made(entity)
        self.episodes = EpisodeStarts(self, p.episode_topic)   # a start resets executor and filters
        self.loop = TickLoop(p.control_hz, self._tick, source=self.inputs, mode=p.tick_source, name="rdp-fast",
                             rt_priority=p.rt_priority, cpu=p.cpu, lock_memory=p.lock_memory,
                             warn=self.get_logger().warning, sensor_timeout=p.safety.contact_timeout,
                             stamp_clock=self._now, phases=PHASES, on_error=lambda _exc: not rclpy.ok())
        ix = self.loop.times.index
        self._i = tuple(ix[n] for n in PHASES)
        self.loop.start()
        self.get_logger().info(f"{self.model_type} executor at {p.control_hz:g} Hz (tick source {p.tick_source}), "
                               f"contact={self.contact_kind}, "
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

    def _tick(self, now: float, trigger: float | None) -> None:
        """One tick, in the control thread; the loop has taken the readings (``trigger``:
        the capture stamp of the reading that started it, None for a clock tick)."""
        if trigger is not None:
            # from the reading's arrival at this process (DDS reception time) to the tick: how
            # long the loop took to wake; capture -> arrival is the sensor's and the transport's
            self.loop.times.record(self._i[5], time.time() - self.inputs.trigger_received)
        last, self._last_now = self._last_now, now
        if last is not None and not (0.0 <= now - last <= 0.5):
            # The clock went backwards or leapt: every chunk's alignment is void. Drop them
            # and hold (the safety filter holds when no target comes) until a new chunk.
            self.clock_jumps += 1
            self.reactive.reset()
            self.get_logger().warning("clock jump: chunks dropped, holding", throttle_duration_sec=1.0)
        state = self.command_state()   # publishes the hold itself on the tick after a deactivation
        if state == "idle":
            return
        snap = self.inputs.snapshot()   # polled: the live state this thread just took
        for s in snap.values():
            if s.pose_stamp != s.pose_stamp:
                if state == "restart":
                    self.restart_pending()   # restart on the first tick with a state
                return  # no robot state yet (NaN stamp): publish nothing
        with self._lock:
            pending, self._pending_chunk = self._pending_chunk, None
            estop = self._estop
        episode = self.episodes.check(snap)
        if episode == "wait":
            return   # a new episode: publish nothing until the arm's state is from it
        if episode == "restart" or state == "restart":
            self.controller.restart(snap)   # forget every chunk, filters from where the arms are
        res = self.controller.tick(now, snap, pending, estop, self.inputs)
        rec = self.loop.times.record
        i_exec, i_decode, i_safety, i_publish, i_c2c, _ = self._i
        rec(i_exec, res.executor_s)
        rec(i_safety, res.safety_s)
        if res.produced:    # the decode of a tick with a chunk to decode (without one it is a no-op)
            rec(i_decode, res.decode_s)
        if res.rejected:
            self.get_logger().warning(f"chunk rejected: {res.rejected}", throttle_duration_sec=1.0)
        t0 = time.perf_counter()
        contact_stamp = res.contact_stamp
        commands = res.commands
        for arm, pub in self._raw_pubs:
            pos, quat = commands[arm]
            pub.publish(contact_stamp if contact_stamp == contact_stamp else snap[arm].pose_stamp, pos, quat)
        if res.produced:
            # From the capture of the contact reading to the publish of the command that used it.
            rec(i_c2c, self._now() - contact_stamp)
        rec(i_publish, time.perf_counter() - t0)

    # -------------------------------------------------------------- diagnostics

    def _publish_diagnostics(self) -> None:
        values = self.loop.report()
        c2c = self.loop.times.percentiles("contact_to_command", scale=1e3)
        dec = self.loop.times.percentiles("decode", scale=1e6)
        del values["tick_ms/contact_to_command_p50"], values["tick_ms/contact_to_command_p99"]
        arrival = values.pop("tick_ms/arrival_to_tick_p50"), values.pop("tick_ms/arrival_to_tick_p99")
        values["arrival_to_tick_ms_p50"], values["arrival_to_tick_ms_p99"] = arrival
        values.update({"contact_to_command_ms_p50": c2c[0], "contact_to_command_ms_p99": c2c[1],
                       "tick_us_p50": dec[0], "tick_us_p99": dec[1],   # the executor's decode, as before
                       "step_index": self.reactive.last_step_index, "chunks_received": self.chunks_received,
                       "chunks_malformed": self.bad_chunks, "clock_jumps": self.clock_jumps,
                       "sensor_messages_rejected": self.inputs.rejected})
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

    def _hold(self) -> None:
        """Command every arm to stay where it is measured (the robot's controller keeps the
        last target it got: that must not be a point mid-chunk)."""
        publish_hold(self, self.pubs, self.inputs.snapshot(), self._now(), self.p.world_frame)

    def _cleanup(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            self.loop = None
        self.inputs.close()
        self.release_made()
        self.episodes.close()


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = RdpFastParams


def main(args=None) -> int:
    return run_node(RdpFast, args)


if __name__ == "__main__":
    raise SystemExit(main())
