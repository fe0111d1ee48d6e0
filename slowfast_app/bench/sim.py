"""`slowfast bench sim`: physics real-time factor (no rendering; one camera) and the
achieved topic rates of the sim node running over DDS with its camera rendering."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="wipe", help="wipe | lift")
    p.add_argument("--embodiment", default="floating", help="floating | arm (Panda arms, 1 kHz impedance control)")
    p.add_argument("--seconds", type=float, default=5.0, help="sim seconds per real-time-factor run")
    p.add_argument("--topic-seconds", type=float, default=10.0, help="seconds of topic measurement")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--camera-hz", type=float, default=30.0)


def run(args: argparse.Namespace) -> dict:
    from geometry_msgs.msg import PoseStamped, WrenchStamped  # noqa: PLC0415
    from sensor_msgs.msg import Image, JointState, PointCloud2  # noqa: PLC0415
    from sim import scene_spaces  # noqa: PLC0415
    from sim.bench import physics_rtf  # noqa: PLC0415

    from slowfast_app import stack  # noqa: PLC0415
    from slowfast_ros.topic_probe import TopicProbe  # noqa: PLC0415

    if args.seconds <= 0 or args.topic_seconds <= 0:
        raise ValueError("--seconds and --topic-seconds must be > 0")
    print("physics without rendering...", file=sys.stderr, flush=True)
    no_render = physics_rtf(task=args.task, seconds=args.seconds, render=False, embodiment=args.embodiment)
    print("physics with one camera...", file=sys.stderr, flush=True)
    with_cam = physics_rtf(task=args.task, seconds=args.seconds, render=True, width=args.width,
                           height=args.height, camera_hz=args.camera_hz, embodiment=args.embodiment)

    arms = scene_spaces(args.task, args.embodiment).arms
    rates = {"pose": 200.0, "wrench": 200.0, "tactile": 200.0}
    topics, expected = {}, {}
    for arm in arms:
        for key, (name, mtype) in {"pose": ("tcp_pose", PoseStamped), "wrench": ("tcp_wrench", WrenchStamped),
                                   "tactile": ("tactile/markers", PointCloud2)}.items():
            topics[f"/{arm}/{name}"] = mtype
            expected[f"/{arm}/{name}"] = rates[key]
        if args.embodiment == "arm":
            topics[f"/{arm}/joint_states"] = JointState
            expected[f"/{arm}/joint_states"] = rates["pose"]
    topics["/camera/color/image_raw"] = Image
    expected["/camera/color/image_raw"] = args.camera_hz

    print(f"sim node over DDS for {args.topic_seconds:.0f} s...", file=sys.stderr, flush=True)
    profile = stack.load_profile("sim")
    overrides = {"sim_node": {"task": args.task, "embodiment": args.embodiment, "camera_hz": args.camera_hz, "camera_width": args.width,
                              "camera_height": args.height, "perturb": True, "episode_seconds": 600.0,
                              "pose_hz": rates["pose"], "wrench_hz": rates["wrench"],
                              "tactile_hz": rates["tactile"]}}
    probe = TopicProbe(topics)
    try:
        with tempfile.TemporaryDirectory() as logs, stack.Stack(profile, overrides, log_dir=Path(logs)) as s:
            if not probe.wait_for(list(topics), timeout=60.0, count=5):
                raise RuntimeError(f"sim node published nothing on some topics: {s.last_line('sim_node')}")
            time.sleep(1.0)  # settle
            probe.clear()
            time.sleep(args.topic_seconds)
            stats = probe.stats()
    finally:
        probe.close()
    topic_rates = {}
    for name, st in stats.items():
        topic_rates[name] = {
            "configured_hz": expected[name], "achieved_hz": round(st.get("rate_hz", 0.0), 2),
            "receipt_hz": round(st.get("receipt_rate_hz", 0.0), 2),
            "ratio": round(st.get("rate_hz", 0.0) / expected[name], 3),
            "stamps_monotonic": st.get("stamps_monotonic"),
            "latency_ms_p50": round(st.get("latency_ms_p50", float("nan")), 3),
            "latency_ms_p99": round(st.get("latency_ms_p99", float("nan")), 3)}
    return {
        "task": args.task,
        "embodiment": args.embodiment,
        "rtf_no_render": round(no_render["rtf"], 2),
        **({"controller_us_per_step": round(no_render["controller_us_per_step"], 1),
            "controller_status": no_render["controller_status"]} if args.embodiment == "arm" else {}),
        "rtf_one_camera": round(with_cam["rtf"], 2),
        "camera": f"{args.width}x{args.height}@{args.camera_hz:g}Hz",
        "topics": topic_rates,
        "all_topics_within_10pct": all(abs(v["ratio"] - 1) <= 0.10 and abs(v["receipt_hz"] / v["configured_hz"] - 1) <= 0.10
                                       for v in topic_rates.values()),
    }
