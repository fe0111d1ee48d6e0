"""The camera render process (sim/render_process.py): the same pixels as the in-process
renderer for the same state, and a child that never outlives its parent."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from sim import SimConfig, SimEnv
from sim.render import SnapshotRenderer
from sim.render_process import ProcessRenderer

W, H = 64, 48
SINK = "sim.render_process:NpzSink"


def _env(**kw):
    return SimEnv(SimConfig(camera_width=W, camera_height=H, **kw))


def _renderer(env, out: Path, **kw) -> ProcessRenderer:
    try:
        return ProcessRenderer(env.model, env.cameras, W, H, sink=SINK, sink_kwargs={"out_dir": str(out)}, **kw)
    except RuntimeError as exc:
        if "EGL" in str(exc) or "GL" in str(exc):
            pytest.skip(f"headless rendering unavailable: {exc}")
        raise


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line for line in f)   # a zombie has exited
    except FileNotFoundError:
        return True


def _wait(cond, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.mark.parametrize("task,embodiment", [("wipe", "floating"), ("lift", "arm")])
def test_same_image_and_depth_as_the_in_process_renderer(tmp_path, task, embodiment):
    env = _env(task=task, embodiment=embodiment, seed=1)
    env.step(400)                       # mid-motion: poses differ from the home pose
    pr = _renderer(env, tmp_path, depth=True)
    try:
        assert pr.submit(3, 12.5, env.time, env.data)
        pr.end_episode(3)
    finally:
        assert pr.close() == 0
    snap_r = SnapshotRenderer(env)
    snap = snap_r.snapshot(env.data)
    rgb, depth = snap_r.render(snap, "camera", depth=True)
    snap_r.close()
    frame = np.load(tmp_path / "frame_00000.npz")
    assert int(frame["episode"]) == 3 and float(frame["stamp"]) == 12.5 and float(frame["sim_t"]) == env.time
    assert np.array_equal(frame["camera_rgb"], rgb)
    assert np.array_equal(frame["camera_depth"], depth)
    assert (tmp_path / "end_3").exists() and (tmp_path / "closed").exists()   # the sink closed in order


def test_child_exits_when_closed_and_frames_are_counted(tmp_path):
    env = _env(task="wipe")
    pr = _renderer(env, tmp_path)
    pid = pr.proc.pid
    for k in range(3):
        env.step(10)
        pr.submit(0, float(k), env.time, env.data)
        _wait(lambda n=k + 1: pr.frames >= n)     # not timing: one frame at a time, none dropped
    assert pr.frames == 3
    assert pr.close() == 0
    assert _gone(pid) and (tmp_path / "closed").exists()
    assert not pr.submit(0, 9.0, env.time, env.data)      # closed: nothing more is sent
    assert pr.close() == 0                                # idempotent


def test_child_death_is_reported_once_and_frames_stop(tmp_path):
    env = _env(task="wipe")
    exits = []
    pr = _renderer(env, tmp_path, on_exit=exits.append)
    try:
        os.kill(pr.proc.pid, signal.SIGKILL)
        assert _wait(lambda: exits)
        assert exits == [-signal.SIGKILL] and pr.failed
        assert not pr.submit(0, 0.0, env.time, env.data)
    finally:
        pr.close()
    assert exits == [-signal.SIGKILL]


def test_a_sink_that_cannot_start_is_one_clear_error(tmp_path):
    env = _env(task="wipe")
    with pytest.raises(RuntimeError, match="render process.*no_such_sink"):
        ProcessRenderer(env.model, env.cameras, W, H, sink="sim.render_process:no_such_sink")


PARENT = textwrap.dedent("""
    import sys, time
    from sim import SimConfig, SimEnv
    from sim.render_process import ProcessRenderer
    if __name__ == "__main__":
        env = SimEnv(SimConfig(task="wipe", camera_width=64, camera_height=48))
        pr = ProcessRenderer(env.model, env.cameras, 64, 48, sink="sim.render_process:NpzSink",
                             sink_kwargs={"out_dir": sys.argv[1]})
        print(pr.proc.pid, flush=True)
        time.sleep(600)
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_child_exits_when_its_parent_dies(tmp_path, sig):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")]))
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        line = parent.stdout.readline()
        if not line.strip():
            pytest.skip("the parent could not start a render process (headless rendering unavailable?)")
        child = int(line)
        assert not _gone(child)
        parent.send_signal(sig)         # SIGKILL: no chance to close it; SIGTERM: Python's default, no handler
        parent.wait(timeout=20)
        assert _wait(lambda: _gone(child)), "render process outlived its parent"
        assert (tmp_path / "closed").exists()      # it closed its sink on the way out
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
