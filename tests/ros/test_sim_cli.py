"""`slowfast sim` end to end over DDS: sim node + expert node as separate processes."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.dds


@pytest.mark.parametrize("task", ["wipe", "lift"])
def test_sim_runs_episodes_and_writes_metrics_video_and_plot(tmp_path, task):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "slowfast_app.cli", "sim", "--task", task, "--controller", "expert",
                        "--episodes", "1", "--seed", "3", "--episode-seconds", "6", "--out", str(out)],
                       capture_output=True, text=True, timeout=240, env=dict(os.environ))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "episode 1/1" in r.stdout and "summary:" in r.stdout
    data = json.loads((out / "metrics.json").read_text())
    assert len(data["episodes"]) == 1 and data["episodes"][0]["task"] == task
    assert data["episodes"][0]["seed"] == 3
    assert data["summary"]["episodes"] == 1
    assert (out / "force_000.png").stat().st_size > 10_000

    import imageio.v2 as imageio
    frames = sum(1 for _ in imageio.get_reader(str(out / "camera_000.mp4")))
    assert 6 * 30 * 0.95 <= frames <= 6 * 30 + 2  # the whole episode at the camera rate (drops repeat a frame)


def test_sim_runs_the_lift_expert_on_two_arms(tmp_path):
    """``--embodiment arm``: the Panda arms under their impedance controllers, through ROS 2."""
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "slowfast_app.cli", "sim", "--task", "lift", "--embodiment", "arm",
                        "--controller", "expert", "--episodes", "1", "--seed", "0", "--camera-hz", "0",
                        "--out", str(out)], capture_output=True, text=True, timeout=240, env=dict(os.environ))
    assert r.returncode == 0, r.stdout + r.stderr
    ep = json.loads((out / "metrics.json").read_text())["episodes"][0]
    assert ep["task"] == "lift" and ep["embodiment"] == "arm"
    assert ep["max_lift"] > 0.05, ep       # the arms gripped and raised the box
