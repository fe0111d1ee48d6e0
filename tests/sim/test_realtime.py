"""The real-time simulator runner (sim/realtime.py) without ROS: what the sim node serves is
decided here, so its episodes, stamps, streams, targets and reports are checked with plain
Python outputs."""
import threading
import time

import numpy as np
import pytest

from sim.realtime import RealTimeConfig, RealTimeSim


class Recorder:
    """An ``Outputs`` that keeps everything it is handed."""

    def __init__(self):
        self.states, self.clocks, self.events, self.rejects, self.lines = [], [], [], [], []
        self.ready_calls = self.polls = 0
        self.on_state = None

    def now(self):
        return time.monotonic() + 1000.0    # any clock the runner does not own

    def state(self, stamp, arm, obs, joints, which):
        self.states.append((stamp, arm, tuple(which), obs.tcp_pos.copy(), joints))
        if self.on_state is not None:
            self.on_state(stamp, arm)

    def clock(self, stamp):
        self.clocks.append(stamp)

    def event(self, payload):
        self.events.append(payload)

    def reject(self, arm, why):
        self.rejects.append((arm, why))

    def log(self, level, text):
        self.lines.append((level, text))

    def wait_ready(self, stop):
        self.ready_calls += 1

    def poll(self):
        self.polls += 1


def run(cfg, out=None, before=None):
    out = out or Recorder()
    sim = RealTimeSim(cfg, out)
    if before is not None:
        before(sim, out)
    sim.run()
    return sim, out


def test_episodes_stream_on_their_sim_time_grids_stamped_at_capture(tmp_path):
    cfg = RealTimeConfig(task="wipe", episodes=2, episode_seconds=0.3, start_delay=0.05, camera_hz=0.0,
                         pose_hz=100.0, wrench_hz=200.0, tactile_hz=50.0, clock_hz=100.0, out_dir=str(tmp_path))
    sim, out = run(cfg)
    assert out.ready_calls == 1
    assert out.polls >= 2 * 300        # the transport is polled before every 1 ms physics step
    starts = [e for e in out.events if e["event"] == "start"]
    ends = [e for e in out.events if e["event"] == "end"]
    assert [e["episode"] for e in starts] == [0, 1] and [e["seed"] for e in starts] == [0, 1]
    assert [e["reason"] for e in ends] == ["task_length", "task_length"]
    assert all("success" in e["metrics"] for e in ends)
    for e in ends:   # each episode says whether it ran in real time
        rt = e["metrics"]["real_time"]
        assert 0.0 < rt["factor"] <= 1.0 and rt["slowed_s"] >= 0.0 and rt["camera_frames_dropped"] == 0
    for ep, start in enumerate(starts):
        t0 = start["start_stamp"]
        assert start["hold_stamp"] == pytest.approx(t0 - 0.05)
        end = ends[ep]["stamp"]
        run_states = [s for s in out.states if t0 < s[0] <= end]
        # each stream on its own grid: 0.3 s of sim time at 100 / 200 / 50 Hz
        for k, hz in (("pose", 100), ("wrench", 200), ("tactile", 50)):
            n = sum(k in s[2] for s in run_states)
            assert abs(n - 0.3 * hz) <= 1, (k, n)
        stamps = [s[0] for s in run_states]
        assert stamps == sorted(stamps)
        # the hold publishes live stamps (all three streams), never one frozen stamp
        hold = [s[0] for s in out.states if start["hold_stamp"] - 0.01 <= s[0] < t0]
        assert len(hold) >= 2 and len(set(hold)) == len(hold)
    assert abs(len(out.clocks) - 2 * 0.3 * 100) <= 2
    for ep in (0, 1):
        assert (tmp_path / f"force_{ep:03d}.npz").is_file() and (tmp_path / f"force_{ep:03d}.png").is_file()
    assert (tmp_path / "metrics.json").is_file()
    values, problems = sim.status()
    assert values["episode"] == 1 and values["real_time_factor"] > 0


def test_an_episode_the_machine_could_not_hold_says_so():
    """Outputs that take 10 ms per reading (a starved machine): the sim slows its world down
    instead of lagging, and the episode's record says by how much."""
    cfg = RealTimeConfig(task="wipe", episodes=1, episode_seconds=0.3, start_delay=0.05, camera_hz=0.0)

    def before(sim, out):
        out.on_state = lambda stamp, arm: time.sleep(0.01) if stamp >= sim.episode_start else None

    _, out = run(cfg, before=before)
    (end,) = [e for e in out.events if e["event"] == "end"]
    rt = end["metrics"]["real_time"]
    assert rt["factor"] < 0.5 and rt["slowed_s"] > 0.3, rt


def test_a_target_moves_the_tool_and_a_bad_or_stale_one_is_never_applied():
    cfg = RealTimeConfig(task="wipe", episodes=1, episode_seconds=0.6, start_delay=0.05, camera_hz=0.0)

    def before(sim, out):
        home, quat = sim.env.home_pose("arm")
        sent = {}

        def on_state(stamp, arm):
            if sent or stamp < sim.episode_start:
                return
            sent["x"] = True
            sim.set_target("arm", stamp - 10.0, home + [0.0, 0.0, 0.3], quat)   # from a past episode
            sim.set_target("arm", stamp, np.array([np.nan, 0.0, 0.3]), quat)    # NaN
            threading.Timer(0.05, lambda: sim.set_target("arm", out.now(), home + [0.03, 0.0, 0.0], quat)).start()
        out.on_state = on_state

    sim, out = run(cfg, before=before)
    assert len(out.rejects) == 1 and out.rejects[0][0] == "arm"
    home, _ = sim.env.home_pose("arm")
    last = [s for s in out.states if "pose" in s[2]][-1][3]
    assert last[0] - home[0] > 0.02          # the good target moved it in x
    assert abs(last[2] - home[2]) < 0.05     # the stale 0.3 m target was dropped


def test_operator_ends_the_episode_and_malformed_commands_are_refused():
    cfg = RealTimeConfig(task="wipe", episodes=1, episode_end="operator", start_delay=0.05, camera_hz=0.0)

    def before(sim, out):
        for bad in ({"cmd": "stop"}, {"cmd": "end", "episode": True}, ["end"]):
            with pytest.raises(ValueError):
                sim.ending.command(bad)

        asked = []

        def on_state(stamp, arm):
            if sim.env.time > 0.2 and not asked:
                asked.append(stamp)
                assert sim.ending.command({"cmd": "end", "episode": 7}) == ""   # another episode's
                assert "end requested" in sim.ending.command({"cmd": "end", "episode": 0, "source": "page"})
        out.on_state = on_state

    sim, out = run(cfg, before=before)
    end = [e for e in out.events if e["event"] == "end"][0]
    assert end["reason"] == "operator" and 0.2 < sim.env.time < 1.0


def test_a_stop_ends_the_run_without_an_end_event():
    cfg = RealTimeConfig(task="wipe", episodes=0, start_delay=0.05, camera_hz=0.0)
    out = Recorder()
    sim = RealTimeSim(cfg, out)
    t = threading.Thread(target=sim.run)
    t.start()
    time.sleep(0.5)
    sim.stop()
    t.join(timeout=5.0)
    assert not t.is_alive()
    assert [e["event"] for e in out.events] == ["start"]


@pytest.mark.parametrize("bad", [dict(pose_hz=0.5), dict(camera_hz=200.0), dict(episodes=-1), dict(max_lag=11.0),
                                 dict(episode_end="never"), dict(rt_priority=99)])
def test_bad_values_are_refused_by_name(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        RealTimeConfig(**bad)
