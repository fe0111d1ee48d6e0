"""sim_node: the MuJoCo simulator served over ROS 2, in real time.

Publishes, per arm (``arm`` for wipe; ``left``/``right`` for lift):
  <arm>/tcp_pose (PoseStamped, world), <arm>/tcp_wrench (WrenchStamped, tool frame),
  <arm>/tactile/markers (PointCloud2 x, y, dx, dy, pad frame),
  <arm>/joint_states (JointState, at pose_hz; with ``embodiment: arm`` only)
and per camera: <cam>/color/image_raw, <cam>/color/camera_info,
<cam>/aligned_depth_to_color/image_raw (16UC1 mm, when ``depth`` is on); plus /clock,
/diagnostics (1 Hz; with the arm, its controller's saturation / limit / singularity counters
this episode) and ``sim/episode`` (latched JSON events: start, end with metrics and
the reason it ended). Subscribes <arm>/target_tcp (PoseStamped in the world frame). A NaN,
non-unit or out-of-workspace target is rejected with a warning and counted, never applied.

With ``interface: ros2_control`` (``embodiment: arm``, one arm: wipe) the node offers instead
the topics of the ros2_control stack the README has users bring up on a real arm, so
``robot_bridge_node`` and its ``cartesian_controllers`` adapter drive the simulated arm as
they would a real one: it subscribes ``/<controller>/target_frame`` (PoseStamped in
``base_frame``, the arm's base; a target in another frame is ignored and counted, as the FZI
controllers do) and publishes the TCP pose in the base frame on ``state_pose_topic``, the
wrist wrench on ``state_wrench_topic`` and ``/joint_states``; no ``<arm>/target_tcp``,
``<arm>/tcp_pose`` or ``<arm>/tcp_wrench`` (the bridge serves those). Tactile, cameras,
/clock, /diagnostics and ``sim/episode`` are as above.

Episodes end at the task's length (``episode_end: task``), or, for a person teleoperating
(``episode_end: operator``), when the operator asks on ``sim/episode_command`` (JSON
``{"cmd": "end", "episode": N}``, sent by teleop_node for a headset or page button) or after
``max_episode_minutes`` (see :mod:`sim.episodes`).

Timing: one physics thread steps MuJoCo at 1 kHz and keeps sim time locked to the wall
clock; every message is stamped with the ROS time of its capture (episode start + sim
time). Cameras render from a snapshot of the physics state in a thread of this process
(readings then go out up to a render late), or, with ``render_process: true``, in a child
process (:mod:`sim.render_process`) that publishes the camera topics itself from a node of
its own (``<name>_render``, same topics, stamps and QoS) and writes the episode video, so the
render does not hold this process's GIL while the physics thread publishes. The child process
is off by default: in one of our 20-episode RDP runs over ROS 2 with it, no chunk was ever
planned and the stack did not exit after the last episode (not reproduced since, cause not
found); the thread has served every evaluation in docs/results.md.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, WrenchStamped
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2
from std_msgs.msg import String

from hardware.robot import RigidTransform
from sim.report import jsonable
from slowfast_ros import msgs, qos
from slowfast_ros.arm_io import ROS2_CONTROL, controller_target_topic
from slowfast_ros.node_util import RateMeter, declare_params, param, run_node


INTERFACES = ("stack", "ros2_control")


@dataclasses.dataclass
class SimNodeParams:
    task: str = param("wipe", "task: wipe | lift")
    embodiment: str = param("floating", "floating: tools held by a native impedance coupling | arm: Franka "
                                        "Panda arms under a 1 kHz Cartesian impedance controller")
    seed: int = param(0, "seed of the first episode; episode k uses seed + k")
    perturb: bool = param(True, "surface/object changes at random, seeded times")
    episodes: int = param(0, "episodes to run, then exit (0 = run until stopped)")
    episode_seconds: float = param(0.0, "episode length in s (0 = the task's default; episode_end task)")
    episode_end: str = param("task", "task: an episode ends at the task's length | operator: on the operator's "
                                     "request (sim/episode_command) or after max_episode_minutes")
    max_episode_minutes: float = param(30.0, "with episode_end operator: the longest episode (min)")
    world_frame: str = param("world", "frame of all poses")
    interface: str = param("stack", "stack: <arm>/target_tcp in, <arm>/tcp_pose and <arm>/tcp_wrench out (world) | "
                                    "ros2_control: a real arm's ros2_control topics (embodiment arm, one arm), for "
                                    "robot_bridge_node")
    controller: str = param(ROS2_CONTROL["controller"], "interface ros2_control: targets on <controller>/target_frame")
    base_frame: str = param(ROS2_CONTROL["base_frame"], "interface ros2_control: frame of the targets and the pose")
    state_pose_topic: str = param(ROS2_CONTROL["pose_topic"], "interface ros2_control: TCP pose (base frame)")
    state_wrench_topic: str = param(ROS2_CONTROL["wrench_topic"], "interface ros2_control: wrist wrench")
    pose_hz: float = param(200.0, "TCP pose publish rate (Hz)")
    wrench_hz: float = param(200.0, "wrist wrench publish rate (Hz)")
    tactile_hz: float = param(200.0, "tactile marker field publish rate (Hz)")
    camera_hz: float = param(30.0, "camera rate (Hz); 0 disables rendering")
    camera_width: int = param(320, "camera image width (px)")
    camera_height: int = param(240, "camera image height (px)")
    depth: bool = param(False, "also publish aligned depth (16UC1, mm)")
    render_process: bool = param(False, "render (and publish) the cameras in a child process, off this process's "
                                        "GIL (experimental: one 20-episode RDP run got no image-synchronised chunk "
                                        "and its stack did not exit) | false: in a thread of this process, which "
                                        "delays the force and tactile readings by up to a render")
    render_nice: int = param(0, "render_process: niceness added to the render process (0..19): on a busy CPU the "
                                "physics and the control loop go first, and images come later (rdp_slow wants "
                                "them within its image_tolerance) or are dropped")
    rt_priority: int = param(0, "SCHED_FIFO priority of the physics thread (0 = normal scheduling; the process's "
                                "other threads one below), as a robot's driver runs; without permission the node "
                                "says so once and runs without")
    clock_hz: float = param(100.0, "/clock publish rate (Hz)")
    out_dir: str = param("", "write per-episode metrics, force plot and camera MP4 here ('' = none)")
    start_delay: float = param(0.5, "seconds to hold the home pose before an episode starts (lets controllers reset)")
    max_lag: float = param(0.002, "when physics falls this far behind the wall clock (s), the sim slows down "
                                  "instead: stamps stay the wall time of each reading and readings go out "
                                  "as they are taken, not in catch-up bursts (0 = never)")
    wait_for: list = param([""], "topics that must have a publisher before the first episode starts "
                                 "(a controller that loads a model), waited for up to 120 s")
    chunk_topic: str = param("", "a policy's chunk topic (trajectory_msgs/JointTrajectory): its messages are "
                                 "counted per episode, metric policy_chunks ('' = not counted)")

    def __post_init__(self):
        for name in ("pose_hz", "wrench_hz", "tactile_hz", "clock_hz"):
            v = getattr(self, name)
            if not (1.0 <= v <= 1000.0):
                raise ValueError(f"{name}: {v} Hz outside 1..1000 (physics runs at 1 kHz)")
        if not (0.0 <= self.camera_hz <= 120.0):
            raise ValueError(f"camera_hz: {self.camera_hz} outside 0..120")
        if self.episodes < 0:
            raise ValueError(f"episodes: {self.episodes} must be >= 0")
        if not (0 <= self.rt_priority <= 98):
            raise ValueError(f"rt_priority: {self.rt_priority} outside 0..98")
        if not (0 <= self.render_nice <= 19):
            raise ValueError(f"render_nice: {self.render_nice} outside 0..19")
        if not (0.0 <= self.max_lag <= 10.0):
            raise ValueError(f"max_lag: {self.max_lag} outside 0..10 s")
        if not (0.0 <= self.start_delay <= 10.0):
            raise ValueError(f"start_delay: {self.start_delay} outside 0..10 s")
        if self.interface not in INTERFACES:
            raise ValueError(f"interface: {self.interface!r} not one of {', '.join(INTERFACES)}")
        if self.interface == "ros2_control" and self.embodiment != "arm":
            raise ValueError("interface: ros2_control needs embodiment: arm (joints under a Cartesian controller)")
        from sim.episodes import MODES  # noqa: PLC0415
        if self.episode_end not in MODES:
            raise ValueError(f"episode_end: {self.episode_end!r} not one of {', '.join(MODES)}")
        if not (0.0 < self.max_episode_minutes <= 1440.0):
            raise ValueError(f"max_episode_minutes: {self.max_episode_minutes} outside (0, 1440]")


class WallLock:
    """Sim time locked to the wall clock: never ahead of it, and at most ``max_lag`` behind.

    Further behind (the CPU cannot keep up), the sim slows down instead of lagging: a stamp must
    be the time its reading was taken, and readings older than a consumer's freshness limit are
    stale to it (the safety filter then holds for the rest of the episode). ``slowed`` is the
    wall time the physics was slowed down by; the node stamps ``start + slowed + sim time``.
    ``max_lag`` 0 never slows down (the sim then catches up by stepping without sleeping)."""

    def __init__(self, wall0: float, sim0: float, max_lag: float):
        self.wall0, self.sim0, self.max_lag = wall0, sim0, max_lag
        self.slowed = 0.0

    def ahead(self, wall: float, sim_next: float) -> float:
        """How far (s) the next physics step is ahead of the wall clock (> 0: wait that long)."""
        ahead = (sim_next - self.sim0) - (wall - self.wall0 - self.slowed)
        if self.max_lag and -ahead > self.max_lag:
            self.slowed += -ahead - self.max_lag
            ahead = -self.max_lag
        return ahead

    def real_time_factor(self, wall: float, sim: float) -> float:
        elapsed = wall - self.wall0
        return (sim - self.sim0) / elapsed if elapsed > 0 else 0.0


def topic(arm: str, name: str) -> str:
    return f"{arm}/{name}" if arm else name


class _Stream:
    """A periodic publication on the sim clock."""

    def __init__(self, hz: float):
        self.period = 1.0 / hz
        self.next_t = 0.0

    def due(self, t: float) -> bool:
        if t + 1e-9 >= self.next_t:
            # Stay on the grid; if we fell behind by more than a period, skip ahead.
            self.next_t = max(self.next_t + self.period, t + 0.5 * self.period)
            return True
        return False


class SimNode(Node):
    def __init__(self):
        super().__init__("sim_node")
        from sim import SimConfig, SimEnv  # noqa: PLC0415 - core import at construction
        from sim.episodes import EpisodeEnd  # noqa: PLC0415
        from sim.render import SnapshotRenderer  # noqa: PLC0415

        self.p: SimNodeParams = declare_params(self, SimNodeParams())
        cfg_kwargs = dict(task=self.p.task, embodiment=self.p.embodiment, seed=self.p.seed, perturb=self.p.perturb,
                          camera_width=self.p.camera_width, camera_height=self.p.camera_height,
                          render=self.p.camera_hz > 0)
        if self.p.episode_seconds > 0:
            cfg_kwargs["episode_seconds"] = self.p.episode_seconds
        self.env = SimEnv(SimConfig(**cfg_kwargs))
        self.ending = EpisodeEnd(self.p.episode_end, 60.0 * self.p.max_episode_minutes)
        self.out_dir = Path(self.p.out_dir) if self.p.out_dir else None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not os.access(self.out_dir, os.W_OK):
                raise ValueError(f"out_dir: {self.out_dir} is not writable")

        self.arms = tuple(self.env.arms)
        self._tactile_grid = tuple(self.env.task_spec()["tactile_shape"])
        self.cameras = tuple(self.env.cameras) if self.p.camera_hz > 0 else ()
        self.exit_code = 0
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[float, np.ndarray, np.ndarray]] = {}
        self.rejected: dict[str, int] = {}
        self.episode = -1
        self.episode_start = 0.0
        self.episode_results: list[dict] = []
        self.meters: dict[str, RateMeter] = {}

        pub = qos.SENSOR_PUB
        self.pubs = {}
        # interface ros2_control: the arm's base is the controller's frame (targets and pose)
        self.hw = self.p.interface == "ros2_control"
        self.base_in_world: RigidTransform | None = None
        if self.hw:
            if len(self.arms) != 1:
                raise ValueError(f"interface: ros2_control drives one arm; task {self.p.task} has {len(self.arms)}")
            bpos, bquat = self.env.arm_base(self.arms[0])
            self.base_in_world = RigidTransform(tuple(bpos), tuple(bquat))
            self.world_in_base = self.base_in_world.inverse()
        for arm in self.arms:
            names = ({"pose": self.p.state_pose_topic, "wrench": self.p.state_wrench_topic,
                      "joints": ROS2_CONTROL["joint_states"]} if self.hw else
                     {"pose": topic(arm, "tcp_pose"), "wrench": topic(arm, "tcp_wrench"),
                      "joints": topic(arm, "joint_states")})
            self.pubs[(arm, "pose")] = self.create_publisher(PoseStamped, names["pose"], pub)
            self.pubs[(arm, "wrench")] = self.create_publisher(WrenchStamped, names["wrench"], pub)
            self.pubs[(arm, "tactile")] = self.create_publisher(PointCloud2, topic(arm, "tactile/markers"), pub)
            self.create_subscription(PoseStamped, self._target_topic(arm),
                                     lambda m, a=arm: self._on_target(a, m), qos.COMMAND)
            for k in ("pose", "wrench", "tactile"):
                self.meters[f"{topic(arm, k)}"] = RateMeter()
            if self.p.embodiment == "arm":
                self.pubs[(arm, "joints")] = self.create_publisher(JointState, names["joints"], pub)
        # the camera topics: published here (render thread) or by the render process
        self._camera_topics = {cam: {k: self.resolve_topic_name(t) for k, t in _camera_topics(cam, self.p.depth).items()}
                               for cam in self.cameras}
        for cam in self.cameras:
            if not self.p.render_process:
                for k, t in self._camera_topics[cam].items():
                    self.pubs[(cam, k)] = self.create_publisher(CameraInfo if k == "info" else Image, t, pub)
            self.meters[f"{cam}/image"] = RateMeter()
        self.chunks_this_episode = 0
        if self.p.chunk_topic:
            from trajectory_msgs.msg import JointTrajectory  # noqa: PLC0415
            self.create_subscription(JointTrajectory, self.p.chunk_topic, self._on_chunk, qos.COMMAND)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.episode_pub = self.create_publisher(String, "sim/episode", qos.EVENTS)
        if self.p.episode_end == "operator":
            self.create_subscription(String, "sim/episode_command", self._on_episode_command, qos.COMMAND)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)

        self._streams = {"pose": _Stream(self.p.pose_hz), "wrench": _Stream(self.p.wrench_hz),
                         "tactile": _Stream(self.p.tactile_hz), "clock": _Stream(self.p.clock_hz)}
        self._camera_stream = _Stream(self.p.camera_hz) if self.cameras else None
        self._render_q: queue.Queue = queue.Queue(maxsize=2)
        self.renderer = None          # render thread (render_process false)
        self._render_proc = None      # render process (render_process true)
        self._render_frames = (time.monotonic(), 0)    # its frame count at the last diagnostics
        self._render_close_lock = threading.Lock()
        self._stop = threading.Event()
        if self.cameras and self.p.render_process:
            from sim.render_process import ProcessRenderer  # noqa: PLC0415
            sink_kwargs = dict(node_name=f"{self.get_name()}_render", namespace=self.get_namespace(),
                               topics=self._camera_topics,
                               infos={cam: self.env.camera_info(cam) for cam in self.cameras},
                               out_dir=str(self.out_dir) if self.out_dir is not None else "",
                               fps=self.p.camera_hz)
            self._render_proc = ProcessRenderer(
                self.env.model, self.cameras, self.p.camera_width, self.p.camera_height, depth=self.p.depth,
                shadows=bool(getattr(self.env.cfg, "shadows", False)),
                sink="slowfast_ros.nodes.sim_node:render_process_sink", sink_kwargs=sink_kwargs,
                nice=self.p.render_nice, on_exit=self._render_process_exited)
        elif self.cameras:
            self.renderer = SnapshotRenderer(self.env)
        self.rtf = 0.0
        self.slowed_s = 0.0   # wall seconds the physics was slowed down by (max_lag), finished episodes
        self._wall: WallLock | None = None   # the running episode's clock lock (diagnostics read it)
        self.camera_dropped = 0
        self.physics_rt_priority = 0   # SCHED_FIFO priority the physics thread obtained (rt_priority)
        self._physics = threading.Thread(target=self._physics_loop, name="sim-physics", daemon=True)
        self._render = threading.Thread(target=self._render_loop, name="sim-render", daemon=True)
        if self.renderer is not None:
            self._render.start()
        self._physics.start()
        self.get_logger().info(
            f"sim {self.p.task}: arms {list(self.arms)}, cameras {list(self.cameras)}, "
            f"episodes {self.p.episodes or 'unbounded'}")

    # ------------------------------------------------------------ callbacks (store only)

    def _on_target(self, arm: str, msg: PoseStamped) -> None:
        """A target in the world frame, or (interface ros2_control) a Cartesian controller's
        target in the arm's base frame, moved to the world; the physics thread validates it
        (NaN, non-unit, workspace) with every other target."""
        stamp, pos, quat = msgs.pose_from_msg(msg)
        frames = (self.p.base_frame,) if self.hw else ("", self.p.world_frame)
        if msg.header.frame_id not in frames:
            self._reject(arm, f"frame '{msg.header.frame_id}' is not '{frames[-1]}'")
            return
        if self.hw:
            pos, quat = self.base_in_world.apply(pos, quat)
        with self._lock:
            self._pending[arm] = (stamp, pos, quat)

    def _on_chunk(self, _msg) -> None:
        with self._lock:
            self.chunks_this_episode += 1

    def _on_episode_command(self, msg: String) -> None:
        try:
            cmd = msgs.json_from_msg(msg)
        except ValueError as exc:
            self.get_logger().warning(f"sim/episode_command: {exc}")
            return
        if cmd.get("cmd") != "end":
            self.get_logger().warning(f"sim/episode_command: unknown command {cmd.get('cmd')!r}")
            return
        episode = cmd.get("episode")
        if episode is not None and (isinstance(episode, bool) or not isinstance(episode, int)):
            self.get_logger().warning(f"sim/episode_command: episode {episode!r} is not an integer")
            return
        if self.ending.request(episode):
            self.get_logger().info(f"episode {self.ending.episode}: end requested ({cmd.get('source', '?')})")

    def _target_topic(self, arm: str) -> str:
        """Where ``arm``'s targets arrive: the controller's target_frame (interface
        ros2_control) or <arm>/target_tcp."""
        return controller_target_topic(self.p.controller) if self.hw else topic(arm, "target_tcp")

    def _reject(self, arm: str, why: str) -> None:
        self.rejected[arm] = self.rejected.get(arm, 0) + 1
        self.get_logger().warning(f"{self._target_topic(arm)} rejected: {why}",
                                  throttle_duration_sec=1.0)

    # ------------------------------------------------------------ physics thread

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _start_episode(self) -> None:
        self.episode += 1
        seed = self.p.seed + self.episode
        self.env.reset(seed=seed)
        for arm in self.arms:
            pos, quat = self.env.home_pose(arm)
            self.env.set_target(arm, pos, quat)
        with self._lock:
            self._pending.clear()
            self.chunks_this_episode = 0
        self.episode_start = self._now() + self.p.start_delay
        for s in self._streams.values():
            s.next_t = 0.0
        if self._camera_stream:
            self._camera_stream.next_t = 0.0
        spec = self.env.task_spec()
        self.ending.begin(self.episode)
        self.episode_pub.publish(msgs.json_msg({
            "event": "start", "episode": self.episode, "seed": seed, "task": self.p.task,
            "start_stamp": self.episode_start, "hold_stamp": self.episode_start - self.p.start_delay,
            "arms": list(self.arms), "episode_end": self.p.episode_end,
            "max_seconds": self.ending.limit_s if self.p.episode_end == "operator" else self.env.episode_seconds,
            "task_spec": jsonable(spec)}))
        self.get_logger().info(f"episode {self.episode} (seed {seed}) starts")
        # Hold the home pose while controllers reset, publishing state so they see the robot,
        # stamped live: a reading's stamp is when it was taken, during the hold too (a frozen
        # stamp looks like a dead sensor to every stale-data check downstream).
        while not self._stop.is_set() and self._now() < self.episode_start - 0.01:
            self._publish_state(self._now())
            time.sleep(0.01)
        while self._now() < self.episode_start:
            time.sleep(0.0002)

    def _apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for arm, (stamp, pos, quat) in pending.items():
            if stamp < self.episode_start - self.p.start_delay:
                continue  # a command from before this episode
            try:
                self.env.set_target(arm, pos, quat)
            except ValueError as exc:
                self._reject(arm, str(exc))

    def _publish_state(self, stamp: float, which=("pose", "wrench", "tactile")) -> None:
        for arm in self.arms:
            s = self.env.observe(arm, tactile="tactile" in which)
            if "pose" in which:
                if self.hw:
                    bpos, bquat = self.world_in_base.apply(s.tcp_pos, s.tcp_quat)
                    self.pubs[(arm, "pose")].publish(msgs.pose_msg(stamp, self.p.base_frame, bpos, bquat))
                else:
                    self.pubs[(arm, "pose")].publish(msgs.pose_msg(stamp, self.p.world_frame, s.tcp_pos, s.tcp_quat))
                self.meters[topic(arm, "pose")].tick()
                if (arm, "joints") in self.pubs:
                    self.pubs[(arm, "joints")].publish(msgs.joint_state_msg(stamp, self.env.joint_state(arm)))
            if "wrench" in which:
                self.pubs[(arm, "wrench")].publish(msgs.wrench_msg(stamp, f"{arm}_tool", s.wrench))
                self.meters[topic(arm, "wrench")].tick()
            if "tactile" in which:
                grid = self._tactile_grid
                self.pubs[(arm, "tactile")].publish(
                    msgs.markers_msg(stamp, f"{arm}_tactile_pad", s.tactile, grid))
                self.meters[topic(arm, "tactile")].tick()

    def _physics_loop(self) -> None:
        if self.p.rt_priority > 0:
            from hardware.realtime import bound_gil_wait, enter_realtime, raise_other_threads  # noqa: PLC0415
            state = enter_realtime(self.p.rt_priority, memory=False, warn=self.get_logger().warning)
            self.physics_rt_priority = state.fifo_priority
            if state.realtime:
                # a thread of this process holding the GIL must not be preempted by others
                raise_other_threads(self.p.rt_priority - 1)
                bound_gil_wait(self.env.dt)
        try:
            self._run_episodes()
        except Exception as exc:  # noqa: BLE001 - report and stop, never die silently
            self._stop.set()
            if self.context.ok():  # not a shutdown (Ctrl-C) under our feet: a real failure
                self.get_logger().error(f"physics thread stopped: {exc!r}")
                self.exit_code = 1
        self._close_cameras(timeout=10.0)   # the last video frames are written before exit
        if rclpy.ok():
            rclpy.try_shutdown()

    def _wait_for_controllers(self) -> None:
        topics = [t for t in self.p.wait_for if t]
        deadline = time.monotonic() + 120.0
        while topics and not self._stop.is_set():
            topics = [t for t in topics if self.count_publishers(t) == 0]
            if not topics:
                break
            if time.monotonic() > deadline:
                self.get_logger().warning(f"no publisher on {topics} after 120 s: starting anyway")
                break
            time.sleep(0.1)

    def _run_episodes(self) -> None:
        env, dt = self.env, self.env.dt
        self._wait_for_controllers()
        while not self._stop.is_set():
            if self.p.episodes and self.episode + 1 >= self.p.episodes:
                break
            self._start_episode()
            # Lock sim time to the wall clock: sim time 0 is episode_start on the ROS clock.
            lock = self._wall = WallLock(time.monotonic() - (self._now() - self.episode_start), env.time,
                                         self.p.max_lag)
            reason = None
            while not self._stop.is_set() and (reason := self.ending.check(env.time, env.done)) is None:
                ahead = lock.ahead(time.monotonic(), env.time + dt)
                if ahead > 0:
                    time.sleep(min(ahead, 0.002))
                    continue
                self._apply_pending()
                env.step(1)
                t = env.time
                stamp = self.episode_start + lock.slowed + t
                due = [k for k in ("pose", "wrench", "tactile") if self._streams[k].due(t)]
                if due:
                    self._publish_state(stamp, due)
                if self._streams["clock"].due(t):
                    self.clock_pub.publish(Clock(clock=msgs.to_time(stamp)))
                if self._camera_stream and self._camera_stream.due(t):
                    self._queue_render(stamp, t)
            self.rtf = lock.real_time_factor(time.monotonic(), env.time)
            self.slowed_s += lock.slowed
            self._wall = None
            if self._stop.is_set():
                break
            self._end_episode(reason)
        self.get_logger().info("all episodes done")
        if self.out_dir is not None and self.episode_results:
            from sim.report import write_metrics  # noqa: PLC0415
            summary = write_metrics(self.out_dir / "metrics.json", self.episode_results)
            self.get_logger().info(f"summary: {summary}")

    def _end_episode(self, reason: str | None = None) -> None:
        metrics = jsonable(self.env.metrics())
        if self.p.chunk_topic:
            with self._lock:
                metrics["policy_chunks"] = self.chunks_this_episode
        self.episode_results.append(metrics)
        if self._render_proc is not None:
            self._render_proc.end_episode(self.episode)
        elif self._render.is_alive():   # no cameras: no render thread, nothing to close
            self._render_q.put(("end", self.episode))
        if self.out_dir is not None:
            from sim.report import plot_force  # noqa: PLC0415
            t, f = self.env.force_trace()
            np.savez_compressed(self.out_dir / f"force_{self.episode:03d}.npz", t=t, force=f,
                                band=np.asarray(self.env.force_band, float),
                                perturbation_times=np.asarray(self.env.perturbation_times, float))
            plot_force(self.out_dir / f"force_{self.episode:03d}.png", t, f,
                       self.env.force_band, self.env.perturbation_times,
                       f"{self.p.task} episode {self.episode} (seed {self.p.seed + self.episode})")
        self.episode_pub.publish(msgs.json_msg({"event": "end", "episode": self.episode, "reason": reason,
                                                "stamp": self._now(), "metrics": metrics}))
        # The figures that decide success, so a failed episode says why in the log.
        why = ", ".join(f"{k}={metrics[k]:.3g}" for k in ("coverage", "time_in_band", "max_lift", "hold_time",
                                                           "slip_events", "peak_force")
                        if isinstance(metrics.get(k), (int, float)) and not isinstance(metrics.get(k), bool))
        ended = "" if reason in (None, "task_length") else f", ended by {reason}"   # `slowfast sim` reads the rest
        self.get_logger().info(f"episode {self.episode} done: success={metrics.get('success')} ({why}{ended})")

    # ------------------------------------------------------------ rendering thread

    def _queue_render(self, stamp: float, sim_t: float) -> None:
        if self._render_proc is not None:
            if not self._render_proc.submit(self.episode, stamp, sim_t, self.env.data):
                self.camera_dropped += 1
            return
        snap = self.renderer.snapshot(self.env.data)
        if snap is None:
            self.camera_dropped += 1
            return
        try:
            self._render_q.put_nowait(("frame", self.episode, stamp, sim_t, snap))
        except queue.Full:
            self.renderer.release(snap)
            self.camera_dropped += 1

    def _render_loop(self) -> None:
        video = _EpisodeVideo(self.out_dir, self.p.camera_hz) if self.out_dir is not None else None
        sink = CameraSink(self.pubs, {cam: self.env.camera_info(cam) for cam in self.cameras}, video,
                          on_frame=lambda cam: self.meters[f"{cam}/image"].tick())
        try:
            while (item := self._render_q.get()) is not None:
                if item[0] == "end":
                    sink.end(item[1])
                    continue
                _, episode, stamp, sim_t, snap = item
                try:
                    frames = [(cam, *self.renderer.render(snap, cam, depth=self.p.depth)) for cam in self.cameras]
                finally:
                    self.renderer.release(snap)
                sink.frame(episode, stamp, sim_t, frames)
        except Exception as exc:  # noqa: BLE001 - report, unless it is the shutdown itself
            if self.context.ok():
                self.get_logger().error(f"render thread stopped: {exc!r}")
        finally:
            sink.close()
            self.renderer.close()

    def _render_process_exited(self, code) -> None:
        """The render process ended on its own (its traceback, if any, is on stderr above)."""
        if self.context.ok() and not self._stop.is_set():
            self.get_logger().error(f"camera render process exited (code {code}): no camera frames from now on")

    def _close_cameras(self, timeout: float) -> None:
        """Stop the render thread or process, letting it finish the episode video. Idempotent."""
        with self._render_close_lock:
            if self._render_proc is not None:
                code = self._render_proc.close(timeout=timeout)
                if code not in (0, None) and not self._render_proc.failed:
                    self.get_logger().warning(f"camera render process exited with code {code} when closed")
            elif self._render.is_alive():
                self._render_q.put(None)
                self._render.join(timeout=timeout)

    # ------------------------------------------------------------ diagnostics

    def _publish_diagnostics(self) -> None:
        wall = self._wall
        if wall is not None:   # computed here, at 1 Hz, not on every 1 kHz physics step
            self.rtf = wall.real_time_factor(time.monotonic(), self.env.time)
        values = {f"rate/{k}": m.rate() for k, m in self.meters.items()}
        render_failed = self._render_proc is not None and self._render_proc.failed
        if self._render_proc is not None:   # its frames are counted in the render process
            now, frames = time.monotonic(), self._render_proc.frames
            t0, n0 = self._render_frames
            self._render_frames = (now, frames)
            for cam in self.cameras:
                values[f"rate/{cam}/image"] = (frames - n0) / (now - t0) if now > t0 else 0.0
        values.update({"real_time_factor": self.rtf, "episode": self.episode,
                       "camera_frames_dropped": self.camera_dropped,
                       "physics_rt_priority": self.physics_rt_priority,
                       "slowed_down_s": self.slowed_s + (wall.slowed if wall is not None else 0.0)})
        values.update({f"rejected/{self._target_topic(a)}": n for a, n in self.rejected.items()})
        saturated = False
        for a in self.arms:   # the arm controller's counters this episode (physics steps)
            for k, v in self.env.controller_status(a).items():
                values[f"controller/{a}/{k}"] = v
                saturated |= k in ("wrench_saturated", "torque_saturated", "near_singular") and v > 0
        slow = self.rtf < 0.95 and self.episode >= 0
        level = "error" if render_failed else "warn" if slow or saturated else "ok"
        why = [w for w, on in (("camera render process died", render_failed),
                               ("sim slower than real time", slow),
                               ("arm controller saturated or near a singularity", saturated)) if on]
        status = msgs.diagnostic_status("sim_node", values, level, "; ".join(why))
        self.diag_pub.publish(msgs.diagnostics_msg(self._now(), [status]))

    def close(self) -> None:
        self._stop.set()
        self._physics.join(timeout=5.0)
        self._close_cameras(timeout=5.0)


def _camera_topics(cam: str, depth: bool) -> dict[str, str]:
    t = {"image": f"{cam}/color/image_raw", "info": f"{cam}/color/camera_info"}
    if depth:
        t["depth"] = f"{cam}/aligned_depth_to_color/image_raw"
    return t


class CameraSink:
    """Publishes rendered frames (image, camera_info, depth when rendered; stamped with the
    snapshot's capture time) and writes the episode video: with the node's publishers in its
    render thread, or in the render process with a node of its own (:func:`render_process_sink`)."""

    def __init__(self, pubs: dict, infos: dict, video, on_frame=None, node=None):
        self.pubs, self.infos, self.video, self.on_frame, self._node = pubs, infos, video, on_frame, node

    def frame(self, episode: int, stamp: float, sim_t: float, frames) -> None:
        for cam, rgb, depth in frames:
            frame_id = f"{cam}_color_optical_frame"
            self.pubs[(cam, "image")].publish(msgs.image_msg(stamp, frame_id, rgb))
            self.pubs[(cam, "info")].publish(msgs.camera_info_msg(stamp, self.infos[cam]))
            if depth is not None:
                self.pubs[(cam, "depth")].publish(msgs.depth_msg_mm(stamp, frame_id, depth))
            if self.on_frame is not None:
                self.on_frame(cam)
        if self.video is not None:
            self.video.add(episode, sim_t, frames[0][1])

    def end(self, _episode: int) -> None:
        if self.video is not None:
            self.video.close()

    def close(self) -> None:
        self.end(-1)
        if self._node is not None:
            context = self._node.context
            self._node.destroy_node()
            self._node = None
            rclpy.try_shutdown(context=context)


def render_process_sink(node_name: str, namespace: str, topics: dict, infos: dict, out_dir: str,
                        fps: float) -> CameraSink:
    """Built in the render process (:mod:`sim.render_process`): its own ROS context and node,
    the sim node's camera topics (resolved there) with the same QoS. No executor: it only
    publishes."""
    from rclpy.signals import SignalHandlerOptions  # noqa: PLC0415

    context = rclpy.Context()
    # args=[]: spawn hands the child the parent's argv, whose --ros-args (the node's name
    # remap, its parameter file) are the sim node's, not this one's
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(node_name, namespace=namespace or "/", context=context,
                             use_global_arguments=False, start_parameter_services=False)
    pubs = {(cam, k): node.create_publisher(CameraInfo if k == "info" else Image, t, qos.SENSOR_PUB)
            for cam, ts in topics.items() for k, t in ts.items()}
    video = _EpisodeVideo(Path(out_dir), fps) if out_dir else None
    return CameraSink(pubs, infos, video, node=node)


class _EpisodeVideo:
    """One MP4 of the first camera per episode: camera_NNN.mp4. Frames are placed by their sim
    time: a frame dropped under CPU load repeats the previous one, so the video keeps the
    episode's duration (in sim time: a slowed-down sim does not lengthen it)."""

    def __init__(self, out_dir: Path, fps: float):
        self.out_dir, self.fps = out_dir, fps
        self.writer, self.episode = None, None
        self.t0, self.written, self.last = 0.0, 0, None

    def add(self, episode: int, t: float, rgb: np.ndarray) -> None:
        from sim.report import VideoWriter  # noqa: PLC0415

        if self.writer is None or episode != self.episode:
            self.close()
            self.writer = VideoWriter(self.out_dir / f"camera_{episode:03d}.mp4", fps=self.fps).__enter__()
            self.episode, self.t0, self.written = episode, t, 0
        index = int(round((t - self.t0) * self.fps))
        while self.last is not None and self.written < index:
            self.writer.add(self.last)
            self.written += 1
        self.writer.add(rgb)
        self.written += 1
        self.last = rgb

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.last = None


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = SimNodeParams


def main(args=None) -> int:
    return run_node(SimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
