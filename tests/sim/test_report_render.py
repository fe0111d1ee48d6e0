"""Rendering, the runner's video hook, metrics JSON, force plot, MP4 writer, bench entry."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sim import SimConfig, SimEnv, make_expert
from sim.report import VideoWriter, plot_force, write_metrics
from sim.runner import run_episode


def _render_or_skip(env):
    try:
        return env.render()
    except Exception as exc:  # no usable GL on this machine
        pytest.skip(f"headless rendering unavailable: {exc}")


def test_render_rgb_depth_and_intrinsics():
    env = SimEnv(SimConfig(task="wipe", seed=0, perturb=False, camera_width=160, camera_height=120))
    img = _render_or_skip(env)
    assert img.shape == (120, 160, 3) and img.dtype == np.uint8
    assert img.std() > 5                                    # not a blank frame
    depth = env.render_depth()
    assert depth.shape == (120, 160) and depth.dtype == np.float32
    centre = depth[60, 80]
    assert 0.2 < centre < 1.5                               # the table, a few decimetres away
    info = env.camera_info("camera")
    assert (info.width, info.height) == (160, 120)
    assert info.fx == pytest.approx(info.fy) and info.cx == pytest.approx(79.5)
    assert info.frame_id == "camera_color_optical_frame"
    with pytest.raises(ValueError):
        env.render("nope")
    env.close()


def test_render_disabled():
    env = SimEnv(SimConfig(task="wipe", render=False))
    with pytest.raises(RuntimeError):
        env.render()


def test_runner_records_video_at_camera_rate(tmp_path):
    env = SimEnv(SimConfig(task="lift", seed=1, camera_width=64, camera_height=48, episode_seconds=0.5))
    _render_or_skip(env)
    env.reset(seed=1)
    frames = []
    m = run_episode(env, make_expert("lift", env.task_spec()), control_hz=100.0, record_video=frames.append)
    assert env.done and m["duration"] == pytest.approx(0.5)
    assert len(frames) == 15 and frames[0].shape == (48, 64, 3)
    with VideoWriter(tmp_path / "v.mp4", fps=30) as vw:
        for f in frames:
            vw.add(f)
    assert vw.frames == 15 and (tmp_path / "v.mp4").stat().st_size > 0
    import imageio.v2 as imageio

    back = imageio.mimread(tmp_path / "v.mp4")
    assert len(back) == 15
    with pytest.raises(ValueError):
        VideoWriter(tmp_path / "bad.mp4", fps=0)


def test_write_metrics_and_plot(tmp_path):
    env = SimEnv(SimConfig(task="wipe", seed=0, perturb=True, render=False, episode_seconds=3.0))
    m = run_episode(env, make_expert("wipe", env.task_spec()))
    summary = write_metrics(tmp_path / "out" / "metrics.json", [m, m])
    data = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(data) == {"episodes", "summary"} and len(data["episodes"]) == 2
    assert data["summary"] == summary and summary["episodes"] == 2
    t, f = env.force_trace()
    assert len(t) == len(f) and np.all(np.diff(t) <= 0.005 + 1e-9)       # logged at >= 200 Hz
    plot_force(tmp_path / "force.png", t, f, env.force_band, env.perturbation_times, "wipe seed 0")
    png = (tmp_path / "force.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_entry_point():
    from sim.bench import physics_rtf

    r = physics_rtf(task="wipe", seconds=0.2, render=False)
    assert r["rtf"] > 0 and r["sim_seconds"] == pytest.approx(0.2)
    json.dumps(r)
