"""End to end: `slowfast record --operator scripted` drives the sim through the teleop path
and records a bag; `slowfast convert` turns it into a dataset whose frames line up with the
bag's stamps within half a frame period, which the policy's dataset reader loads; a garbage
bag is named and skipped, a truncated one still converts."""
import shutil
import subprocess
import sys

import numpy as np
import pytest

from teleop_tactar.bag import iter_bag, open_bag

pytestmark = pytest.mark.dds
FPS = 20.0


def test_scripted_record_then_convert(tmp_path, capsys, free_port):
    bags = tmp_path / "bags"
    cmd = [sys.executable, "-m", "slowfast_app.cli", "record", "--operator", "scripted", "--episodes", "1",
           "--task", "wipe", "--out", str(bags), "--port", str(free_port()),
           "--set", "sim_node.episode_seconds=3.0", "--set", "sim_node.camera_width=64",
           "--set", "sim_node.camera_height=48", "--set", "sim_node.camera_hz=20.0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    good = bags / "episode_0000"
    info = open_bag(good)
    assert info.custom_data["task"] == "wipe" and info.custom_data["success"] in ("True", "False")
    assert "saved" in r.stdout + r.stderr and "drops=0" in r.stdout + r.stderr
    # the operator moved the arm through teleop -> safety -> sim
    from rclpy.serialization import deserialize_message
    from geometry_msgs.msg import PoseStamped
    poses = [deserialize_message(bytes(d), PoseStamped) for t, _, d, _ in iter_bag(good) if t == "/arm/tcp_pose"]
    unsafe = [1 for t, *_ in iter_bag(good) if t == "/arm/target_tcp_unsafe"]
    xs = np.array([p.pose.position.x for p in poses])
    assert len(unsafe) > 60 and np.ptp(xs) > 0.05

    # a truncated copy, and a garbage one
    trunc = bags / "episode_0001"
    shutil.copytree(good, trunc)
    mcap = trunc / "episode_0000_0.mcap"
    mcap.write_bytes(mcap.read_bytes()[: int(mcap.stat().st_size * 0.7)])
    junk = bags / "episode_0002"
    shutil.copytree(good, junk)
    (junk / "episode_0000_0.mcap").write_bytes(b"not an mcap file" * 100)

    from slowfast_app.cli import main
    ds = tmp_path / "ds"
    rc = main(["convert", str(bags), "--out", str(ds), "--fps", str(FPS)])
    cap = capsys.readouterr()
    out = cap.out
    assert rc == 1, (cap.out, cap.err)
    assert "episode_0002" in cap.err and "not a readable MCAP" in cap.err    # skipped, and says why
    assert "truncated" in cap.err and "episode_0001" in cap.err             # kept in part, and says so
    assert "2 episode(s)" in out

    from slowfast_data.reader import LeRobotDataset
    d = LeRobotDataset(ds, require=["observation.tcp_pose", "observation.wrench", "observation.tactile", "action"],
                       fps=FPS)
    assert d.ep_ids == [0, 1] and d.cameras == ["camera"]
    assert d.video("camera", 0, (48, 64)).shape[0] == d.ep_end[0] - d.ep_start[0]
    # frames line up with the bag's capture stamps within half a frame period
    S = np.array([p.header.stamp.sec + p.header.stamp.nanosec * 1e-9 for p in poses])
    P = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z] for p in poses])
    sl = slice(d.ep_start[0], d.ep_end[0])
    rows = d.data["observation.tcp_pose"][sl, :3].astype(np.float64)
    cands = [S[np.abs(P - row).max(axis=1) < 1e-6] - t for row, t in zip(rows, d.timestamp[sl])]
    assert all(len(c) for c in cands)                               # every row is a real message
    offset = np.median([c[0] for c in cands if len(c) == 1])        # frame time 0 on the bag's clock
    # every row not marked stale sits within half a frame period of its frame time (a sim
    # that stalls under CPU load leaves gaps in the stamps: the frames in them are marked)
    chosen = np.array([np.abs(c - offset).min() for c in cands])
    stale = d.data["stale"][sl, 0] > 0
    assert (chosen[~stale] <= 0.5 / FPS + 1e-3).all(), chosen[~stale]
    assert not stale.all()
    info_json = (ds / "meta" / "info.json").read_text()
    assert '"observation.tactile"' in info_json and (ds / "meta" / "stats.json").is_file()
