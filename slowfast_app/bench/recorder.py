"""`slowfast bench recorder`: recorder throughput, drops and CPU, and teleop latency.

1. Recorder: a publisher process sends two 640x480 RGB streams at 30 Hz, a tactile marker
   field at 200 Hz, wrench and pose at 500 Hz for ``--seconds``; recorder_node records one
   episode. Reported: messages published vs in the bag per topic (drops), the recorder's
   CPU (user + system seconds per wall second, from /proc), bag size, write rate and the
   bag's bytes against the raw stream's (the serialized messages). The camera frames
   (``--images``) are the simulator's, rendered along a scripted wipe episode (what a sim
   demonstration records), or uniform noise (incompressible: the worst case for the bytes).
2. Teleop: teleop_node with a TCP pose source; hand messages are posted over HTTP at 60 Hz
   with the clutch held; latency from sending the request to receiving the published
   ``<arm>/target_tcp_unsafe`` (same clock, this process), p50/p99.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STREAMS = {  # topic -> (rate Hz, kind)
    "/arm/tcp_pose": (500.0, "pose"), "/arm/tcp_wrench": (500.0, "wrench"),
    "/arm/tactile/markers": (200.0, "tactile"),
    "/cam_a/color/image_raw": (30.0, "image"), "/cam_b/color/image_raw": (30.0, "image")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=120.0, help="recording length (default 120 s)")
    p.add_argument("--teleop-seconds", type=float, default=10.0, help="teleop latency run length (default 10 s)")
    p.add_argument("--pub-depth", type=int, default=0,
                   help="publisher history depth (default 0: the stack's SENSOR_PUB, as the sim and drivers use)")
    p.add_argument("--dds-transports", default="",
                   help="FASTDDS_BUILTIN_TRANSPORTS for the recording run (e.g. DEFAULT for Fast DDS's own; "
                        "default: the stack's, slowfast_ros.qos.transport_env)")
    p.add_argument("--images", choices=("sim", "noise"), default="sim",
                   help="camera frames: rendered by the simulator along a wipe episode (default) or uniform noise")
    p.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)


def _frames(kind: str, n: int = 60):
    """``n`` 640x480 RGB frames for each camera stream: the wipe scene's camera along an
    expert episode at 30 Hz (the two streams from different moments), or uniform noise."""
    import numpy as np  # noqa: PLC0415

    if kind == "noise":
        rng = np.random.default_rng(0)
        return [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(2)]
    from sim import SimConfig, SimEnv  # noqa: PLC0415
    from sim.expert import make_expert  # noqa: PLC0415
    from sim.runner import run_episode  # noqa: PLC0415

    env = SimEnv(SimConfig(task="wipe", camera_width=640, camera_height=480, seed=0))
    frames: list = []
    try:
        run_episode(env, make_expert("wipe", env), record_video=frames.append, video_hz=30.0)
    finally:
        env.close()
    return frames[: 2 * n]


def _publisher(seconds: float, depth: int = 0, images: str = "sim") -> None:
    """Child process: publish STREAMS for ``seconds``; print the counts and the raw stream's
    bytes (serialized messages) as JSON."""
    import numpy as np  # noqa: PLC0415
    import rclpy  # noqa: PLC0415
    from geometry_msgs.msg import PoseStamped, WrenchStamped  # noqa: PLC0415
    from sensor_msgs.msg import Image, PointCloud2  # noqa: PLC0415

    from slowfast_ros import msgs, qos  # noqa: PLC0415

    from rclpy.serialization import serialize_message  # noqa: PLC0415

    frames = _frames(images)                  # rendered before anything is timed
    rclpy.init()
    node = rclpy.create_node("bench_publisher")
    rng = np.random.default_rng(0)
    types = {"pose": PoseStamped, "wrench": WrenchStamped, "tactile": PointCloud2, "image": Image}
    profile = qos.SENSOR_PUB
    if depth:
        from rclpy.qos import QoSProfile  # noqa: PLC0415
        profile = QoSProfile(history=qos.SENSOR_PUB.history, depth=depth, reliability=qos.SENSOR_PUB.reliability,
                             durability=qos.SENSOR_PUB.durability)
    pubs = {t: node.create_publisher(types[k], t, profile) for t, (_, k) in STREAMS.items()}
    end = time.monotonic() + 30
    while time.monotonic() < end and not all(p.get_subscription_count() for p in pubs.values()):
        time.sleep(0.05)
    print("ready", flush=True)
    sys.stdin.readline()                      # the parent says go once the recorder records
    proto = {"pose": msgs.pose_msg(0.0, "world", [0.1, 0.2, 0.3], [0, 0, 0, 1]),
             "wrench": msgs.wrench_msg(0.0, "arm_tool", rng.normal(size=6)),
             "tactile": msgs.markers_msg(0.0, "pad", rng.normal(size=(63, 4)) * 1e-3, (9, 7))}
    cams = [t for t, (_, k) in STREAMS.items() if k == "image"]
    # each camera cycles through its own half of the frames (built before the clock starts)
    half = max(1, len(frames) // len(cams))
    cam_frames = {t: [msgs.image_msg(0.0, "cam", f) for f in (frames[i * half:(i + 1) * half] or frames)]
                  for i, t in enumerate(cams)}
    size = {t: len(serialize_message(cam_frames[t][0] if k == "image" else proto[k])) for t, (_, k) in STREAMS.items()}
    counts = {t: 0 for t in STREAMS}
    next_t = {t: 0.0 for t in STREAMS}
    t0 = time.monotonic()
    clock = node.get_clock()
    while (now := time.monotonic() - t0) < seconds:
        for t, (hz, kind) in STREAMS.items():
            if now >= next_t[t]:
                next_t[t] += 1.0 / hz
                m = cam_frames[t][counts[t] % len(cam_frames[t])] if kind == "image" else proto[kind]
                m.header.stamp = clock.now().to_msg()
                pubs[t].publish(m)
                counts[t] += 1
        time.sleep(0.0005)
    time.sleep(0.5)
    print(json.dumps({"counts": counts, "raw_bytes": sum(counts[t] * size[t] for t in STREAMS)}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recorder_stack(out: Path):
    """The bench's stack: ``recorder_node`` alone, recording every bench stream into ``out``
    (a profile and its overrides, as :class:`slowfast_app.stack.Stack` takes them)."""
    from slowfast_app import stack  # noqa: PLC0415

    profile = stack.Profile("bench", "", [stack.NodeSpec("recorder_node", "slowfast_ros.nodes.recorder_node",
                                                         ["recorder_node.yaml"])])
    return profile, {"recorder_node": {"out_dir": str(out), "topics": list(STREAMS), "bag.min_free_mb": 50.0}}


def _recorder_bench(seconds: float, pub_depth: int = 0, images: str = "sim") -> dict:
    from std_msgs.msg import String  # noqa: PLC0415

    from slowfast_ros import msgs, qos  # noqa: PLC0415
    from slowfast_app import stack  # noqa: PLC0415
    from slowfast_ros.topic_probe import TopicProbe  # noqa: PLC0415
    from teleop_tactar.bag import iter_bag, open_bag  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bags"
        profile, overrides = recorder_stack(out)
        probe = TopicProbe({})
        cmd = probe.node.create_publisher(String, "/recorder/command", qos.COMMAND)
        states: list[dict] = []
        probe.node.create_subscription(String, "/recorder/state", lambda m: states.append(msgs.json_from_msg(m)),
                                       qos.LATCHED)
        try:
            with stack.Stack(profile, overrides, log_dir=Path(tmp) / "log") as s:
                pub = stack.start_child([sys.executable, "-m", "slowfast_app.bench.recorder", "--publisher",
                                        "--seconds", str(seconds), "--pub-depth", str(pub_depth), "--images", images],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                try:
                    if pub.stdout.readline().strip() != "ready":   # frames rendered, publishers matched
                        raise RuntimeError("bench publisher did not start")
                    end = time.monotonic() + 10
                    while cmd.get_subscription_count() == 0 and time.monotonic() < end:
                        time.sleep(0.05)
                    cmd.publish(msgs.json_msg({"cmd": "start"}))
                    time.sleep(1.0)
                    pid = s.procs["recorder_node"].pid
                    c0, w0 = _cpu_seconds(pid), time.monotonic()
                    pub.stdin.write("go\n")
                    pub.stdin.flush()
                    sent = json.loads(pub.stdout.readline())
                    counts = sent["counts"]
                    c1, w1 = _cpu_seconds(pid), time.monotonic()
                    try:
                        pub.wait(30)
                    except subprocess.TimeoutExpired:   # the counts are in: a slow exit loses nothing
                        print("bench publisher did not exit in 30 s: killed", file=sys.stderr)
                finally:
                    if pub.poll() is None:
                        pub.kill()
                time.sleep(1.0)
                cmd.publish(msgs.json_msg({"cmd": "stop"}))
                time.sleep(2.0)
        finally:
            probe.close()
        bag = out / "episode_0000"
        got = {t: 0 for t in STREAMS}
        for topic, *_ in iter_bag(bag):
            got[topic] = got.get(topic, 0) + 1
        size = sum(f.stat().st_size for f in bag.iterdir())
        info = open_bag(bag)
    queue_drops = max((sum(st.get("drops", {}).values()) for st in states), default=0)
    per_topic = {t: {"published": counts[t], "recorded": got[t], "dropped": counts[t] - got[t]} for t in STREAMS}
    return {"seconds": seconds, "publisher_depth": pub_depth or qos.SENSOR_PUB.depth, "topics": per_topic, "drops_total": sum(v["dropped"] for v in per_topic.values()),
            "drops_in_recorder_queue": queue_drops,
            "recorder_cpu_cores": round((c1 - c0) / (w1 - w0), 3),
            "bag_mb": round(size / 1e6, 1), "write_mb_per_s": round(size / 1e6 / (w1 - w0), 1),
            "raw_mb": round(sent["raw_bytes"] / 1e6, 1), "bag_over_raw": round(size / sent["raw_bytes"], 4),
            "images": images, "bag_truncated": info.truncated}


def _teleop_bench(seconds: float) -> dict:
    import http.client  # noqa: PLC0415
    import socket  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    from geometry_msgs.msg import PoseStamped  # noqa: PLC0415

    from slowfast_ros import msgs, qos  # noqa: PLC0415
    from slowfast_app import stack  # noqa: PLC0415
    from slowfast_ros.topic_probe import TopicProbe  # noqa: PLC0415
    from teleop_tactar import protocol  # noqa: PLC0415
    from teleop_tactar.frames import world_to_unity_pos  # noqa: PLC0415

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    recv: list[tuple[float, float]] = []
    probe = TopicProbe({})
    node = probe.node
    node.create_subscription(PoseStamped, "/arm/target_tcp_unsafe",
                             lambda m: recv.append((time.perf_counter(), m.pose.position.x)), qos.RECORD_SUB)
    pose_pub = node.create_publisher(PoseStamped, "/arm/tcp_pose", qos.SENSOR_PUB)
    from diagnostic_msgs.msg import DiagnosticArray  # noqa: PLC0415
    internal: list[float] = []

    def on_diag(m):
        for st in m.status:
            if st.name == "teleop_node":
                v = msgs.diagnostics_values(st).get("latency_ms_p99")
                if v is not None:
                    internal.append(float(v))
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    profile = stack.Profile("bench", "", [stack.NodeSpec("teleop_node", "slowfast_ros.nodes.teleop_node",
                                                         ["teleop_node.yaml"])])
    sent: dict[float, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp, stack.Stack(
                profile, {"teleop_node": {"server.port": port, "camera": ""}}, log_dir=Path(tmp)):
            conn = None
            end = time.monotonic() + 30
            while time.monotonic() < end:
                pose_pub.publish(msgs.pose_msg(time.time(), "world", [0.0, 0.0, 0.1], [0, 0, 0, 1]))
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
                    conn.request("GET", "/status")
                    conn.getresponse().read()
                    break
                except OSError:
                    conn = None
                    time.sleep(0.2)
            buttons = [False] * 5
            buttons[protocol.BTN_GRIP] = True
            t_end = time.monotonic() + seconds
            k = 0
            while time.monotonic() < t_end:
                pose_pub.publish(msgs.pose_msg(time.time(), "world", [0.0, 0.0, 0.1], [0, 0, 0, 1]))
                x = 1e-4 * (k % 500)                                    # a unique target x per request
                body = json.dumps(protocol.hand_json(k / 60, {"right": (world_to_unity_pos([0.3 + x, 0, 1.0]),
                                                                        [1, 0, 0, 0], 0.0, buttons)})).encode()
                t_send = time.perf_counter()
                conn.request("POST", "/unity", body, {"Content-Type": "application/json"})
                conn.getresponse().read()
                sent[round(x, 6)] = t_send
                k += 1
                time.sleep(max(0.0, 1 / 60 - (time.perf_counter() - t_send)))
            time.sleep(1.2)
    finally:
        probe.close()
    x0 = recv[0][1] if recv else 0.0
    lat = []
    for t_recv, x in recv[1:]:
        key = round(x - x0, 6)
        if key in sent and t_recv >= sent[key]:
            lat.append((t_recv - sent[key]) * 1e3)
    lat = np.array(lat[5:]) if len(lat) > 10 else np.array([np.nan])
    return {"requests": k, "targets": len(recv), "http_to_target_ms_p50": round(float(np.percentile(lat, 50)), 3),
            "http_to_target_ms_p99": round(float(np.percentile(lat, 99)), 3),
            "in_node_request_to_publish_ms_p99": internal[-1] if internal else None}


def run(args: argparse.Namespace) -> dict:
    if args.seconds <= 0 or args.teleop_seconds <= 0:
        raise ValueError("--seconds and --teleop-seconds must be > 0")
    from slowfast_ros import qos  # noqa: PLC0415

    if args.dds_transports and qos.discovery_range() == "LOCALHOST":
        raise ValueError(f"--dds-transports: with LOCALHOST discovery Fast DDS reads no {qos.TRANSPORTS_VAR}; "
                         f"compare transports with {qos.RANGE_VAR}=SUBNET")
    print(f"recorder: {args.seconds:g} s of 2x640x480@30 Hz, tactile@200 Hz, wrench+pose@500 Hz...",
          file=sys.stderr, flush=True)
    saved = os.environ.get(qos.TRANSPORTS_VAR)
    if args.dds_transports:   # every process of the recording run (this one included) uses them
        os.environ[qos.TRANSPORTS_VAR] = args.dds_transports
    try:
        in_effect = qos.transports_in_effect()
        rec = _recorder_bench(args.seconds, args.pub_depth, args.images)
    finally:
        if saved is None:
            os.environ.pop(qos.TRANSPORTS_VAR, None)
        else:
            os.environ[qos.TRANSPORTS_VAR] = saved
    rec["dds_transports"] = in_effect
    print(f"teleop latency: {args.teleop_seconds:g} s at 60 Hz...", file=sys.stderr, flush=True)
    tel = _teleop_bench(args.teleop_seconds)
    return {"recorder": rec, "teleop": tel,
            "targets": {"zero_drops": rec["drops_total"] == 0, "recorder_cpu_below_half_core": rec["recorder_cpu_cores"] < 0.5,
                        "bag_le_fifth_of_raw": rec["bag_over_raw"] <= 0.2,
                        "teleop_p99_le_5ms": tel["http_to_target_ms_p99"] <= 5.0}}


if __name__ == "__main__":  # the publisher child process
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    a = ap.parse_args()
    if a.publisher:
        _publisher(a.seconds, a.pub_depth, a.images)
