"""rdp_slow: the slow side of the Reactive Diffusion Policy (or the Diffusion Policy baseline).

Keeps the latest observations from its subscriptions (camera images, TCP poses, contact
readings, each with its capture stamp), and in its own thread at ``rate_hz`` (6 Hz default)
builds the model's observation history ending at the newest TCP pose, runs the latent
diffusion policy (DDIM through onnxruntime), and publishes the chunk on
``policy/latent_chunk`` stamped with that pose's capture time: the fast node aligns the
chunk and finds its start pose by that stamp. Inference latency goes to /diagnostics.

A lifecycle node (``slowfast_ros.lifecycle``): configure loads and warms up the model and
starts the planning thread, activate starts planning on a fresh history (no chunk comes from
an observation made before the activation), deactivate stops planning (no inference, no chunk
published after the transition returns; a cycle in progress finishes first), cleanup stops
the thread and releases the model.
"""
from __future__ import annotations

import dataclasses
import threading

from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from trajectory_msgs.msg import JointTrajectory

from slowfast_ros import msgs, qos
from policy.serving import ImageHistory, SlowCycle, SlowPlanner, load_slow_planner
from slowfast_ros.arm_io import ArmInputs
from slowfast_ros.lifecycle import ManagedNode, ManagedParams
from slowfast_ros.node_util import PacedLoop, RateMeter, declare_params, node_now, param, run_node


@dataclasses.dataclass
class RdpSlowParams(ManagedParams):
    export_dir: str = param("", "folder written by `slowfast export` (obs_encoder/denoiser ONNX + runtime.json)")
    rate_hz: float = param(6.0, "inference rate (Hz)")
    arms: list = param(["arm"], "arm namespaces, in the model's arm order")
    world_frame: str = param("world", "frame of TCP poses")
    max_obs_age: float = param(0.25, "skip a cycle when the newest observation is older than this (s)")
    image_tolerance: float = param(0.05, "max |stamp difference| between a history step and its image (s)")
    num_inference_steps: int = param(0, "DDIM steps (0 = the model's default)")
    threads: int = param(1, "onnxruntime intra-op threads (0 = all cores; 1 leaves the other cores to the fast loop)")
    seed: int = param(0, "seed of the diffusion noise")
    episode_topic: str = param("", "latched JSON episode events ('sim/episode' in sim): a start clears the history")
    handover: str = param("blend", "chunk handover: 'blend' (independent chunks, rdp_fast blends them) or "
                                   "'inpaint' (each chunk generated with the steps that execute during its "
                                   "inference frozen to the previous chunk: Real-Time Chunking)")
    inpaint_soft_s: float = param(0.16, "with handover 'inpaint': how far past the frozen steps the new chunk is "
                                        "pulled towards the previous one, with decaying weights, at rate_hz (s); "
                                        "an inference longer than a period stretches it by as much as it "
                                        "stretches the cycle; at least the chunk's length = the whole overlap, "
                                        "as Real-Time Chunking does (on wipe at 8 chunks/s that kept it from "
                                        "re-planning: 5/20 against 19/20)")

    def __post_init__(self):
        if not self.export_dir:
            raise ValueError("export_dir: required (a folder written by `slowfast export`)")
        if not (0.1 <= self.rate_hz <= 100.0):
            raise ValueError(f"rate_hz: {self.rate_hz} outside 0.1..100")
        if not (0.01 <= self.max_obs_age <= 5.0):
            raise ValueError(f"max_obs_age: {self.max_obs_age} outside [0.01, 5] s")
        if not (0.0 <= self.inpaint_soft_s <= 60.0):
            raise ValueError(f"inpaint_soft_s: {self.inpaint_soft_s} outside [0, 60] s")
        from policy.rdp.handover import HANDOVERS  # noqa: PLC0415
        if self.handover not in HANDOVERS:
            raise ValueError(f"handover: {self.handover!r} is not one of {', '.join(HANDOVERS)}")


class RdpSlow(ManagedNode):
    active_note = "planning from observations made from now on"
    inactive_note = "no inference, no chunk published until activated"

    def __init__(self):
        super().__init__("rdp_slow")
        p = self.p = declare_params(self, RdpSlowParams)
        self.inputs: ArmInputs | None = None
        self.pub = None
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.book = SlowCycle(p.max_obs_age)   # skips, latencies, chunks published: kept across reconfigurations
        self._cycle_lock = threading.Lock()   # a cycle and a transition never overlap
        self.loop: PacedLoop | None = None
        self.create_timer(1.0, self._publish_diagnostics)
        self.cycles = RateMeter()
        self.autostart(p.autostart)

    def _configure(self) -> None:
        p = self.p
        # taken raw by a thread of their own, not by executor callbacks (a fifth of a core per
        # kHz stream in Python, and the executor then holds the GIL the planning thread needs);
        # closed at cleanup (release_made), before the context goes: left to the interpreter's
        # exit, the reader's wait set outlived it and the process died of SIGSEGV
        self.inputs = self.made(ArmInputs(self, p.arms, history_s=3.0, polled=True))
        self.inputs.start_reader("rdp-slow-inputs")
        # warmed up before the loop starts: otherwise the first chunk of the first episode comes seconds late
        self.planner, warm_s = load_slow_planner(
            p.export_dir, p.arms, p.rate_hz, image_tolerance=p.image_tolerance, num_inference_steps=p.num_inference_steps,
            threads=p.threads, seed=p.seed, handover=p.handover, inpaint_soft_s=p.inpaint_soft_s,
            warn=self.get_logger().warning)
        self.policy, meta = self.planner.policy, self.planner.policy.meta
        self.images = ImageHistory(self.policy.cameras)
        for cam in self.policy.cameras:
            self.made(self.create_subscription(Image, f"{cam}/color/image_raw",
                                               lambda m, c=cam: self._on_image(c, m), qos.SENSOR_SUB))
        if p.episode_topic:
            from std_msgs.msg import String  # noqa: PLC0415
            self.made(self.create_subscription(String, p.episode_topic, self._on_episode, qos.LATCHED))
        # Created once the model is loaded and warmed up: a sim waiting for a publisher on this
        # topic (sim_node.wait_for) starts its first episode when the policy can plan for it.
        self.pub = self.made(self.create_publisher(JointTrajectory, "policy/latent_chunk", qos.COMMAND))
        # polled: a cycle is due every 1/rate_hz, and at once after an episode start (SlowPlanner)
        self.loop = PacedLoop(max(p.rate_hz, SlowPlanner.POLL_HZ), self._cycle, name="rdp-slow").start()
        self.get_logger().info(f"{meta['model_type']} at {p.rate_hz:g} Hz: cameras {self.policy.cameras}, "
                               f"contact={self.planner.contact_kind}, providers {self.policy.providers}, warm-up {warm_s:.1f} s")

    def _cleanup(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            self.loop = None
        self.release_made()
        self.pub = self.inputs = None
        self.policy = self.planner = self.images = None

    def _activate(self) -> None:
        with self._cycle_lock:
            self._forget()   # a fresh history: nothing observed before now goes into a chunk
            self.book.activate(self._now())
            self.active = True

    def _deactivate(self) -> None:
        with self._cycle_lock:   # waits for a cycle in progress: no chunk after this returns
            self.active = False

    def _on_image(self, cam: str, msg: Image) -> None:
        try:
            stamp, rgb = msgs.image_from_msg(msg)
        except ValueError as exc:
            self.book.skip("bad_image")
            self.get_logger().warning(f"{cam}: {exc}", throttle_duration_sec=5.0)
            return
        if msg.encoding == "bgr8":
            rgb = rgb[..., ::-1]
        if rgb.ndim != 3:
            self.book.skip("bad_image")
            return
        self.images.add(cam, stamp, rgb)

    def _on_episode(self, msg) -> None:
        event = msgs.episode_start(msg)
        if event is not None:
            # the sim holds the home pose before start_stamp without stepping: plan from after it
            self._forget(float(event.get("start_stamp", float("-inf"))))

    def _forget(self, not_before: float = float("-inf")) -> None:
        self.inputs.reset()
        self.images.clear()
        self.planner.restart(not_before)

    _now = node_now

    def _cycle(self) -> None:
        with self._cycle_lock:
            if self.active:
                self._plan_once()

    def _plan_once(self) -> None:
        now = self._now()
        if not self.planner.due(now):
            return
        t_obs, chunk, why = self.book.plan(now, self.inputs.snapshot(), self.planner, self.inputs, self.images)
        if why == "nonfinite_chunk":
            # A broken model (NaN/inf weights, a bad export): nothing it says may reach the
            # arm. Dropped, counted, logged and reported as ERROR until a good chunk comes.
            self.get_logger().error(f"dropped a non-finite chunk ({self.book.nonfinite_streak} in a row): the "
                                    f"model outputs NaN/inf; check the export in {self.p.export_dir}",
                                    throttle_duration_sec=5.0)
        if why:
            return
        self.pub.publish(msgs.chunk_msg(t_obs, self.p.world_frame, self.planner.kind, chunk, self.planner.row_dt))
        self.book.published_chunk(t_obs, self._now())
        self.cycles.tick()

    def _publish_diagnostics(self) -> None:
        if not self.configured:
            return
        values, level, message, starved = self.book.diagnostics(self._now(), self.active, self.planner,
                                                                self.p.handover, self.cycles.rate(), self.loop.failure)
        if starved:
            self.get_logger().warning(starved, throttle_duration_sec=10.0)
        # who the chunks reach: 0 while chunks go out means no fast loop listens (or DDS never
        # matched it), which the chunk counts alone do not tell apart from a fast loop refusing them
        values["chunk_subscribers"] = self.pub.get_subscription_count()
        self.diag_pub.publish(msgs.diagnostics_msg(
            self._now(), [msgs.diagnostic_status("rdp_slow", values, level, message)]))


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = RdpSlowParams


def main(args=None) -> int:
    return run_node(RdpSlow, args)


if __name__ == "__main__":
    raise SystemExit(main())
