"""nav_sim_node: the MuJoCo navigation sim served over ROS 2, in real time.

Publishes what a mobile robot with a RealSense publishes: ``odom`` (nav_msgs/Odometry, base in
the odom frame), ``camera/color/image_raw`` (rgb8), ``camera/color/camera_info``,
``camera/aligned_depth_to_color/image_raw`` (16UC1 mm), plus ``/clock``, ``/diagnostics``
(1 Hz) and ``nav_sim/episode`` (latched JSON: start with the instruction and goal, end with
the metrics). Subscribes ``cmd_vel`` (Twist; the base stops when no command came for
``cmd_timeout`` s; non-finite commands are rejected and counted) and ``nav/status`` (the nav
node's episode events: ``stop`` ends the episode).

Each episode publishes its instruction on ``instruction`` (std_msgs/String) once a subscriber
is there. The episode ends on the agent's STOP or after ``episode_seconds``; the executed path
is scored against the reference path (NE, SR, OS, SPL, nDTW) and, with ``out_dir``, written as
``episode_NNN.json`` + ``episode_NNN.png`` and ``summary.json``.

Timing: the base is integrated at ``physics_hz`` in its own thread, locked to the wall clock;
messages are stamped with the ROS time of their capture. The camera renders in its own thread
from a snapshot of the state (``sim.render.SnapshotRenderer``).
"""
from __future__ import annotations

import dataclasses
import json
import queue
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from slowfast_ros import msgs, qos
from sim.nav.env import NavConfig
from slowfast_ros.node_util import RateMeter, declare_params, param, run_node


@dataclasses.dataclass
class NavSimNodeParams:
    seed: int = param(0, "seed of the first episode; episode k uses seed + k (layout and route)")
    episodes: int = param(0, "episodes to run, then exit (0 = run until stopped)")
    episode_seconds: float = param(240.0, "time limit of an episode (s)")
    nav: NavConfig = param(NavConfig(), "the simulated apartment, camera and base (sim.nav.NavConfig)")
    camera_hz: float = param(10.0, "camera rate (Hz)")
    odom_hz: float = param(50.0, "odometry rate (Hz)")
    physics_hz: float = param(100.0, "base integration rate (Hz)")
    cmd_timeout: float = param(0.5, "stop the base when no cmd_vel came for this long (s)")
    odom_frame: str = param("odom", "frame of the odometry (the sim's world frame)")
    base_frame: str = param("base_link", "frame of the base")
    camera_frame: str = param("camera_color_optical_frame", "frame of the camera images")
    out_dir: str = param("", "write per-episode metrics JSON, top-down PNG and summary.json here ('' = none)")
    start_delay: float = param(1.0, "seconds between publishing an episode's instruction and its start")
    success_radius: float = param(3.0, "SR / OS radius (m)")

    def __post_init__(self):
        if self.episodes < 0:
            raise ValueError(f"episodes: {self.episodes} must be >= 0")
        if not (1.0 <= self.episode_seconds <= 36000.0):
            raise ValueError(f"episode_seconds: {self.episode_seconds} outside 1..36000 s")
        if not (0.0 < self.camera_hz <= 60.0):
            raise ValueError(f"camera_hz: {self.camera_hz} outside (0, 60]")
        if not (1.0 <= self.odom_hz <= 500.0):
            raise ValueError(f"odom_hz: {self.odom_hz} outside 1..500")
        if not (self.odom_hz <= self.physics_hz <= 1000.0):
            raise ValueError(f"physics_hz: {self.physics_hz} outside odom_hz..1000")
        if not (0.05 <= self.cmd_timeout <= 10.0):
            raise ValueError(f"cmd_timeout: {self.cmd_timeout} outside 0.05..10 s")
        if not (0.0 <= self.start_delay <= 30.0):
            raise ValueError(f"start_delay: {self.start_delay} outside 0..30 s")
        if not (0.1 <= self.success_radius <= 20.0):
            raise ValueError(f"success_radius: {self.success_radius} outside 0.1..20 m")


class NavSimNode(Node):
    def __init__(self):
        super().__init__("nav_sim_node")
        from sim.nav import NavEnv  # noqa: PLC0415 - core import at construction
        from sim.render import SnapshotRenderer  # noqa: PLC0415

        self.p: NavSimNodeParams = declare_params(self, NavSimNodeParams())
        p = self.p
        self.env = NavEnv(p.nav)
        self.out_dir = Path(p.out_dir) if p.out_dir else None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.exit_code = 0
        self._lock = threading.Lock()
        self._cmd = (0.0, 0.0)
        self._cmd_time = -1e9
        self._stop_request: int | None = None  # episode id the agent said STOP in
        self.rejected_cmds = 0
        self.episode = -1
        self.episode_results: list[dict] = []
        self.meters = {"odom": RateMeter(), "image": RateMeter(), "cmd_vel": RateMeter()}
        self.camera_dropped = 0

        pub = qos.SENSOR_PUB
        self.odom_pub = self.create_publisher(Odometry, "odom", pub)
        self.image_pub = self.create_publisher(Image, "camera/color/image_raw", pub)
        self.info_pub = self.create_publisher(CameraInfo, "camera/color/camera_info", pub)
        self.depth_pub = self.create_publisher(Image, "camera/aligned_depth_to_color/image_raw", pub)
        self.instr_pub = self.create_publisher(String, "instruction", qos.COMMAND)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.episode_pub = self.create_publisher(String, "nav_sim/episode", qos.EVENTS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(Twist, "cmd_vel", self._on_cmd, qos.COMMAND)
        self.create_subscription(String, "nav/status", self._on_status, qos.LATCHED)
        self.create_timer(1.0, self._publish_diagnostics)

        K = self.env.intrinsics
        self.intr = msgs.CameraIntrinsics(p.nav.camera_width, p.nav.camera_height, K[0, 0], K[1, 1], K[0, 2], K[1, 2], p.camera_frame)
        self._render_q: queue.Queue = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self.renderer = None
        self._SnapshotRenderer = SnapshotRenderer
        self._physics = threading.Thread(target=self._physics_loop, name="navsim-physics", daemon=True)
        self._render = threading.Thread(target=self._render_loop, name="navsim-render", daemon=True)
        self._render.start()
        self._physics.start()
        self.get_logger().info(f"nav sim: {p.nav.layout.rooms_x}x{p.nav.layout.rooms_y} rooms, "
                               f"camera {p.nav.camera_width}x{p.nav.camera_height} "
                               f"@ {p.camera_hz} Hz, episodes {p.episodes or 'unbounded'}")

    # ------------------------------------------------------------ callbacks (store only)

    def _on_cmd(self, msg: Twist) -> None:
        try:
            v, w = msgs.twist_from_msg(msg)
        except ValueError as exc:
            self.rejected_cmds += 1
            self.get_logger().warning(f"cmd_vel rejected: {exc}", throttle_duration_sec=1.0)
            return
        with self._lock:
            self._cmd = (v, w)
            self._cmd_time = time.monotonic()
        self.meters["cmd_vel"].tick()

    def _on_status(self, msg: String) -> None:
        try:
            ev = msgs.json_from_msg(msg)
        except ValueError:
            return
        if ev.get("event") == "stop" and ev.get("instruction") == getattr(self, "instruction", None):
            with self._lock:
                self._stop_request = self.episode

    # ------------------------------------------------------------ physics thread

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _physics_loop(self) -> None:
        try:
            self._run_episodes()
        except Exception as exc:  # noqa: BLE001 - report and stop, never die silently
            self._stop.set()
            if self.context.ok():
                self.get_logger().error(f"physics thread stopped: {exc!r}")
                self.exit_code = 1
        self._render_q.put(None)
        if rclpy.ok():
            rclpy.try_shutdown()

    def _start_episode(self):
        from sim.nav import make_episode  # noqa: PLC0415

        self.episode += 1
        seed = self.p.seed + self.episode
        ep = make_episode(seed, self.env.cfg.layout)
        with self._lock:  # the renderer must not read the model while it is replaced
            self.env.reset(ep.layout_seed, ep.start)
            if self.renderer is None or self.renderer.model is not self.env.model:
                self._render_q.put(("renderer", self._SnapshotRenderer(self.env)))
        self.instruction = ep.instruction
        with self._lock:
            self._stop_request = None
            self._cmd, self._cmd_time = (0.0, 0.0), -1e9
        self.episode_pub.publish(msgs.json_msg({
            "event": "start", "episode": self.episode, "seed": seed, "instruction": ep.instruction,
            "goal": list(ep.goal), "goal_name": ep.goal_name, "start": list(ep.start), "shortest": ep.shortest}))
        self.get_logger().info(f"episode {self.episode} (seed {seed}): {ep.instruction}")
        # Wait for a listener (the nav node), publishing odometry and images meanwhile.
        t_end = time.monotonic() + self.p.start_delay
        sent = False
        warn_at = time.monotonic() + 5.0
        while not self._stop.is_set() and (not sent or time.monotonic() < t_end):
            if not sent and warn_at is not None and time.monotonic() > warn_at:
                warn_at = None
                self.get_logger().warning(
                    f"episode {self.episode}: nobody subscribes to {self.instr_pub.topic_name} yet; the episode "
                    "starts when a navigation node (streamvln_nav) listens")
            if not sent and self.instr_pub.get_subscription_count() > 0:
                time.sleep(0.2)  # the subscriber's discovery completes
                self.instr_pub.publish(String(data=ep.instruction))
                sent = True
                t_end = time.monotonic() + self.p.start_delay
            self._publish_odom(self._now())
            time.sleep(0.05)
        return ep

    def _run_episodes(self) -> None:
        p = self.p
        dt = 1.0 / p.physics_hz
        while not self._stop.is_set():
            if p.episodes and self.episode + 1 >= p.episodes:
                break
            ep = self._start_episode()
            if self._stop.is_set():
                break
            t0 = time.monotonic()
            next_t, next_odom, next_cam = t0, t0, t0
            last_rec = self.env.pose.copy()
            path = [last_rec.copy()]
            reason = "time_limit"
            while not self._stop.is_set():
                now = time.monotonic()
                if now < next_t:
                    time.sleep(min(next_t - now, 0.005))
                    continue
                next_t += dt
                if now > next_t + 0.1:
                    next_t = now  # far behind (a stall): do not catch up in a burst
                with self._lock:
                    v, w = self._cmd if now - self._cmd_time <= p.cmd_timeout else (0.0, 0.0)
                    stop_req = self._stop_request == self.episode
                    self.env.step(v, w, dt)
                pose = self.env.pose
                if np.hypot(*(pose[:2] - last_rec[:2])) >= 0.05:
                    path.append(pose.copy())
                    last_rec = pose.copy()
                stamp = self._now()
                if now >= next_odom:
                    next_odom = max(next_odom + 1.0 / p.odom_hz, now)
                    self._publish_odom(stamp)
                if now >= next_cam:
                    next_cam = max(next_cam + 1.0 / p.camera_hz, now)
                    self._queue_render(stamp)
                if stop_req:
                    reason = "stop"
                    break
                if now - t0 > p.episode_seconds:
                    break
            if self._stop.is_set():
                break
            path.append(self.env.pose.copy())
            self._end_episode(ep, np.array(path), reason, time.monotonic() - t0)
        self.get_logger().info("all episodes done")
        if self.out_dir is not None and self.episode_results:
            from sim.nav.metrics import summarize  # noqa: PLC0415
            summary = summarize(self.episode_results)
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
            self.get_logger().info(f"summary: {summary}")

    def _end_episode(self, ep, path: np.ndarray, reason: str, seconds: float) -> None:
        from sim.nav.metrics import metrics_on_layout  # noqa: PLC0415

        m = metrics_on_layout(self.env.layout, path, ep, self.p.success_radius)
        m.update({"episode": self.episode, "seed": ep.seed, "end": reason, "seconds": seconds,
                  "bumps": self.env.bumps, "instruction": ep.instruction})
        self.episode_results.append(m)
        if self.out_dir is not None:
            from sim.nav.report import plot_episode  # noqa: PLC0415
            rec = {**m, "episode_spec": ep.to_dict(), "path": np.round(path, 3).tolist()}
            (self.out_dir / f"episode_{self.episode:03d}.json").write_text(json.dumps(rec, indent=2))
            plot_episode(self.out_dir / f"episode_{self.episode:03d}.png", self.env.layout, ep, path, m,
                         f"episode {self.episode} ({reason})")
        self.episode_pub.publish(msgs.json_msg({"event": "end", "episode": self.episode, "metrics": m}))
        with self._lock:
            self._cmd, self._cmd_time = (0.0, 0.0), -1e9
        self.get_logger().info(f"episode {self.episode} done ({reason}): "
                               + ", ".join(f"{k} {m[k]:.2f}" for k in ("NE", "SR", "SPL", "nDTW")))

    def _publish_odom(self, stamp: float) -> None:
        p = self.p
        self.odom_pub.publish(msgs.odometry_msg(stamp, p.odom_frame, p.base_frame, self.env.pose, self.env.velocity))
        self.clock_pub.publish(Clock(clock=msgs.to_time(stamp)))
        self.meters["odom"].tick()

    # ------------------------------------------------------------ rendering thread

    def _queue_render(self, stamp: float) -> None:
        r = self.renderer
        if r is None or r.model is not self.env.model:
            return
        snap = r.snapshot(self.env.data)
        if snap is None:
            self.camera_dropped += 1
            return
        try:
            self._render_q.put_nowait(("frame", stamp, snap))
        except queue.Full:
            r.release(snap)
            self.camera_dropped += 1

    def _render_loop(self) -> None:
        renderer = None
        while True:
            item = self._render_q.get()
            if item is None:
                break
            if item[0] == "renderer":
                if renderer is not None:
                    renderer.close()
                renderer = self.renderer = item[1]
                continue
            _, stamp, snap = item
            try:
                rgb, depth = renderer.render(snap, "rgbd", depth=True)
            finally:
                renderer.release(snap)
            depth = self.env.clip_depth(depth)
            f = self.p.camera_frame
            self.image_pub.publish(msgs.image_msg(stamp, f, rgb, "rgb8"))
            self.depth_pub.publish(msgs.depth_msg_mm(stamp, f, depth))
            self.info_pub.publish(msgs.camera_info_msg(stamp, self.intr))
            self.meters["image"].tick()
        if renderer is not None:
            renderer.close()

    # ------------------------------------------------------------ diagnostics, shutdown

    def _publish_diagnostics(self) -> None:
        values = {f"rate/{k}": m.rate() for k, m in self.meters.items()}
        values.update({"episode": self.episode, "rejected/cmd_vel": self.rejected_cmds,
                       "camera_dropped": self.camera_dropped, "bumps": self.env.bumps,
                       "x": float(self.env.pose[0]), "y": float(self.env.pose[1]), "yaw": float(self.env.pose[2])})
        self.diag_pub.publish(msgs.diagnostics_msg(self._now(), [msgs.diagnostic_status("nav_sim_node", values)]))

    def close(self) -> None:
        self._stop.set()
        if self._physics.is_alive():
            self._physics.join(timeout=3.0)
        if self._render.is_alive():
            self._render_q.put(None)
            self._render.join(timeout=3.0)


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = NavSimNodeParams


def main(args=None) -> int:
    return run_node(NavSimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
