"""rdp_fast: the fast side of the Reactive Diffusion Policy (and the DP baseline's executor).

A dedicated control thread (:class:`hardware.realtime.TickLoop`) ticks where the data is:
on each reading of the contact sensor the policy reads while it delivers >= 95 % of
``control_hz``, else by the clock at ``control_hz`` (200 Hz default, up to 1 kHz;
``tick_source``). Each tick takes the readings (the thread's own rcl wait set), runs
:class:`policy.serving.FastController` (reactive executor, then each arm's safety filter) and
publishes ``<arm>/target_tcp`` (packed CDR) stamped with the capture time of the contact
reading it used.
The thread runs SCHED_FIFO at ``rt_priority`` on core ``cpu`` with the memory locked when
permitted (one warning when not).

Subscribes ``policy/latent_chunk`` (JointTrajectory, see msgs.chunk_msg) and ``safety/estop``
(latched Bool) through the executor (callbacks only store; the loop never waits on the slow
policy), the arm topics in the control thread. Diagnostics (1 Hz): tick source, loop rate,
period error, where a tick's time goes (input, executor, safety, publish, total: p50/p99),
contact-to-command latency, real-time state, step index, chunk counts and rejections,
safety interventions. The percentiles and counters cover the statistics window (``window_s``):
from the start, or from the last call of the service ``~/reset_statistics``
(std_srvs/Trigger).

A lifecycle node (``slowfast_ros.lifecycle``): configure loads the export and starts the
control thread, activate commands the arms (every chunk forgotten, filters restarted from the
measured pose), deactivate holds every arm where it is measured and commands nothing until
activated again, cleanup stops the thread and releases the model.
"""
from __future__ import annotations

import dataclasses
import math
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
import rclpy
from std_msgs.msg import Bool
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from hardware.realtime import TickLoop, check_late_s
from policy.reactive import ReactiveExecutor
from policy.safety import SafetyConfig, SafetyFilter
from policy.serving import ChunkInbox, FastController, FastLoopConfig, fast_diagnostics, load_fast_export
from slowfast_ros import msgs, qos
from slowfast_ros.arm_io import ArmInputs, EpisodeStarts, RawPosePublisher, SafetyParams, publish_hold, topic
from slowfast_ros.lifecycle import ArmCommander
from slowfast_ros.node_util import declare_params, node_now, param, run_node

#: where a tick's time goes, besides the loop's own "input" and "total"
PHASES = ("executor", "decode", "safety", "publish", "contact_to_command", "arrival_to_tick")


@dataclasses.dataclass
class RdpFastParams(SafetyParams, FastLoopConfig):
    """SafetyParams (arms in the model's arm order, control_hz up to 1 kHz, the filter's
    limits) plus the executor's and the control thread's own (policy.serving.FastLoopConfig)."""

    safety: SafetyConfig = param(SafetyConfig(command_timeout=0.05), "the safety filter's limits (command_timeout: "
                                 "hold when the executor produced no target for this long)")

    def __post_init__(self):
        super().__post_init__()
        FastLoopConfig.__post_init__(self)
        check_late_s(self.late_s, self.control_hz, "tick_deadline")

    @property
    def late_s(self) -> float | None:
        """tick_deadline as hardware.realtime.TickLoop takes it (-1: None, off)."""
        return None if self.tick_deadline == -1 else self.tick_deadline


class RdpFast(ArmCommander):
    def __init__(self):
        super().__init__("rdp_fast")
        p = self.p = declare_params(self, RdpFastParams)
        self.control_period = 1.0 / p.control_hz
        self.loop = None
        self.create_service(Trigger, "~/reset_statistics", self._on_reset_statistics)
        self.autostart(p.autostart)

    def _configure(self) -> None:
        p = self.p
        ex = load_fast_export(p.export_dir, p.arms, p.decoder_threads)
        self.contact_kind, self.model_type = ex.contact_kind, ex.model_type
        self.reactive = ReactiveExecutor(ex.decoder, ex.horizon, 1.0 / ex.fps, p.blend_s, num_arms=len(p.arms))
        self.safety = {a: SafetyFilter(p.safety) for a in p.arms}
        self.controller = FastController(self.reactive, self.safety, ex.contact_kind, ex.contact_dim,
                                         p.chunk_pose_tolerance, p.force, splice=p.splice, splice_export=p.export_dir)
        tactile = self.contact_kind == "tactile"
        self.inputs = self.made(ArmInputs(self, p.arms, history_s=3.0, polled=True, tactile=tactile,
                                          trigger="tactile" if tactile else "wrench"))
        self.inbox = ChunkInbox()   # what the callbacks store for the control thread
        self.pubs = {a: self.create_publisher(PoseStamped, topic(a, "target_tcp"), qos.COMMAND) for a in p.arms}
        self._raw_pubs = [(a, RawPosePublisher(self.pubs[a], p.world_frame)) for a in p.arms]
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.chunk_sub = self.create_subscription(JointTrajectory, "policy/latent_chunk", self._on_chunk, qos.COMMAND)
        for entity in (*self.pubs.values(), self.diag_pub, self.chunk_sub,
                       self.create_subscription(Bool, "safety/estop", self._on_estop, qos.LATCHED),
                       self.create_timer(1.0, self._publish_diagnostics)):
            self.made(entity)
        self.episodes = self.made(EpisodeStarts(self, p.episode_topic))   # a start resets executor and filters
        self.loop = TickLoop(p.control_hz, self._tick, source=self.inputs, mode=p.tick_source, name="rdp-fast",
                             rt_priority=p.rt_priority, cpu=p.cpu, lock_memory=p.lock_memory,
                             warn=self.get_logger().warning, sensor_timeout=p.safety.contact_timeout,
                             stamp_clock=self._now, phases=PHASES, on_error=lambda _exc: not rclpy.ok(),
                             late_s=p.late_s)
        ix = self.loop.times.index
        self._i = tuple(ix[n] for n in PHASES)
        self.loop.start()
        self.get_logger().info(f"{self.model_type} executor at {p.control_hz:g} Hz (tick source {p.tick_source}), "
                               f"contact={self.contact_kind}, "
                               f"chunk {ex.horizon} steps at {ex.fps:g} Hz, providers "
                               f"{getattr(ex.decoder, 'providers', ['none (open loop)'])}")

    # -------------------------------------------------------------- callbacks: store only

    def _on_chunk(self, msg: JointTrajectory) -> None:
        try:
            parsed = msgs.chunk_from_msg(msg)
        except ValueError as exc:
            self.inbox.malformed += 1
            self.get_logger().warning(f"policy/latent_chunk rejected: {exc}", throttle_duration_sec=1.0)
            return
        self.inbox.put(parsed)

    def _on_estop(self, msg: Bool) -> None:
        self.inbox.set_estop(bool(msg.data))

    def _on_reset_statistics(self, request, response):
        """Start a new statistics window: the loop's percentiles and counters, and the splice
        times, cover from here (a benchmark's measurement, a run after a warm-up)."""
        loop = self.loop
        if loop is None:
            response.success, response.message = False, "not configured: no control loop"
            return response
        loop.reset_statistics()
        splicer = self.controller.splicer
        if splicer is not None:
            splicer.times.clear()
        response.success, response.message = True, "statistics window started"
        return response

    # -------------------------------------------------------------- the control thread

    _now = node_now

    def _tick(self, now: float, trigger: float | None) -> None:
        """One tick, in the control thread; the loop has taken the readings (``trigger``:
        the capture stamp of the reading that started it, None for a clock tick)."""
        if trigger is not None:
            # from the reading's arrival at this process (DDS reception time) to the tick: how
            # long the loop took to wake; capture -> arrival is the sensor's and the transport's
            self.loop.times.record(self._i[5], time.time() - self.inputs.trigger_received)
        if self.controller.clock_jumped(now):   # chunks dropped: the filters hold until a new one
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
        inbox = self.inbox
        with inbox.lock:
            pending, inbox.chunk = inbox.chunk, None
            estop = inbox.estop
        episode = self.episodes.check(snap)
        if episode == "wait":
            return   # a new episode: publish nothing until the arm's state is from it
        if episode == "restart" or state == "restart":
            # forget every chunk, filters from where the arms are; a chunk planned before this
            # episode's start (the last one's, still in flight) is refused
            self.controller.restart(snap, self.episodes.start_stamp if episode == "restart" else -math.inf)
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
        values, level = fast_diagnostics(self.loop.report(), self.loop.times, self.controller, self.inbox,
                                         self.inputs.rejected, self.loop.failure)
        values["chunk_publishers"] = publishers = self.chunk_sub.get_publisher_count()   # slow sides DDS matched
        message = "holding" if level == "warn" else ""
        if level == "warn" and publishers == 0:
            message = "holding: no publisher of policy/latent_chunk matched (is rdp_slow up, on this domain?)"
        status = msgs.diagnostic_status("rdp_fast", values, level, message)
        self.diag_pub.publish(msgs.diagnostics_msg(self._now(), [status]))

    def _hold(self) -> None:
        """Command every arm to stay where it is measured (the robot's controller keeps the
        last target it got: that must not be a point mid-chunk)."""
        publish_hold(self, self.pubs, self.inputs.snapshot(), self._now(), self.p.world_frame)

    def _cleanup(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            self.loop = None
        controller = getattr(self, "controller", None)   # none when configure failed before it
        if controller is not None:
            controller.close()
        self.release_made()


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = RdpFastParams


def main(args=None) -> int:
    return run_node(RdpFast, args)


if __name__ == "__main__":
    raise SystemExit(main())
