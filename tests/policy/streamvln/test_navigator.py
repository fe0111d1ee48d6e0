"""The navigation that streamvln_nav runs (policy.streamvln.navigator), without ROS: episodes
start, end and cancel with their record; turns are paced, dropped when the instruction changed
and stop on max_turns; the base is held on stale inputs and a pose jump drops the goals; a frame
that cannot be decoded is counted once."""
from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import pytest

from policy.streamvln.navigator import Navigator, NavigatorConfig
from slowfast_data.camera import CameraIntrinsics
from slowfast_data.geometry import base_camera_pose

W, H = 8, 6
INTR = CameraIntrinsics(W, H, 5.0, 5.0, 4.0, 3.0, "cam")


class Stats:
    cache_tokens, memory_tokens = 7, 3

    def as_dict(self):
        return {"cache_tokens": 7, "memory_tokens": 3, "skip_reasons": {"blurred": 2}}


class ScriptedAgent:
    """Returns the queued action lists in turn; records what it was asked."""

    def __init__(self, *plans, on_step=None):
        self.plans = list(plans)
        self.on_step = on_step
        self.resets, self.poses = [], []
        self.stats = Stats()

    def reset(self, text):
        self.resets.append(text)

    def step(self, rgb, depth, K, camera_pose):
        assert rgb.shape == (H, W, 3) and depth.shape == (H, W) and K.shape == (3, 3)
        self.poses.append(camera_pose)
        if self.on_step is not None:
            self.on_step()
        return self.plans.pop(0) if self.plans else []


class Frames:
    """A frame source: each new() call is a newer colour + depth pair; counts the decodes."""

    def __init__(self):
        self.stamp = 0.0
        self.decodes = 0
        self.fail = False

    def new(self, stamp):
        self.stamp = stamp

    def __call__(self):
        def decode():
            self.decodes += 1
            if self.fail:
                raise ValueError("unknown encoding")
            return np.zeros((H, W, 3), np.uint8), np.ones((H, W)), self.stamp, INTR
        return self.stamp, decode


def _nav(agent, **cfg):
    events = []
    nav = Navigator(NavigatorConfig(**cfg), events.append, agent=agent)
    return nav, events


def _feed(nav, frames, t, pose=(0.0, 0.0, 0.0), speed=0.0):
    """Odometry and a frame stamped ``t``, received at monotonic time ``t``."""
    nav.odometry(t, np.array(pose, float), speed, now=t)
    frames.new(t)
    nav.image_received(t)


def test_an_episode_drives_forward_and_ends_on_stop_with_its_record():
    agent = ScriptedAgent([1, 1], [0])
    nav, events = _nav(agent, plan_ahead_actions=0)
    frames = Frames()
    nav.instruct("  go   to the  kitchen ")
    _feed(nav, frames, 1.0)
    nav.turn(frames)
    assert events == [{"event": "start", "instruction": "go to the kitchen"}]
    assert agent.resets == ["go to the kitchen"] and nav.navigating and nav.turns == 1 and len(nav.tracker) == 2
    nav.turn(frames)            # two actions queued, plan_ahead_actions 0: no turn
    assert nav.turns == 1 and len(agent.poses) == 1
    cmd = nav.control(1.01)
    assert cmd.stopped is None and cmd.v > 0 and not cmd.done
    # the base drives both steps (0.5 m); then the STOP turn ends it
    x, t = 0.0, 1.0
    while len(nav.tracker) and t < 20.0:
        t += 1 / 30
        nav.odometry(t, np.array([x, 0.0, 0.0]), 0.3, now=t)
        nav.image_received(t)
        x += nav.control(t).v / 30
    assert x == pytest.approx(0.5, abs=0.05)
    frames.new(t)
    nav.turn(frames)
    cmd = nav.control(t + 0.01)
    assert cmd.done and (cmd.v, cmd.w) == (0.0, 0.0)
    nav.end("stop")
    end = events[-1]
    assert end["event"] == "stop" and end["turns"] == 2 and end["cache_tokens"] == [7, 7] == [t[2] for t in nav.episode_turns]
    assert end["memory_tokens"] == [3, 3]
    assert len(end["turn_latency_s"]) == len(end["turn_cpu_s"]) == 2 and end["goal_timeouts"] == 0
    assert not nav.navigating and not nav.stops


def test_the_base_is_held_on_stale_inputs_and_a_pose_jump_drops_the_goals():
    agent = ScriptedAgent([1, 1, 1])
    nav, _ = _nav(agent, odom_timeout=0.3, image_timeout=1.0, max_pose_jump=0.5)
    frames = Frames()
    assert nav.control(0.0) == (0.0, 0.0, None, False)    # no episode: zero, not counted
    nav.instruct("go")
    _feed(nav, frames, 1.0)
    nav.turn(frames)
    assert len(nav.tracker) == 3
    assert nav.control(1.4).stopped == "stale_odom"
    nav.odometry(2.1, np.zeros(3), 0.0, now=2.1)
    assert nav.control(2.1).stopped == "stale_image"
    assert dict(nav.stops) == {"stale_odom": 1, "stale_image": 1}
    nav.odometry(2.2, np.array([2.0, 0.0, 0.0]), 0.0, now=2.2)   # 2 m in one message
    nav.image_received(2.2)
    assert nav.control(2.2).v == 0.0 and nav.pose_jumps == 1 and len(nav.tracker) == 0
    assert [s for s, _ in nav._odom_hist] == [2.2]        # no pose from before the jump is matched
    d = nav.diagnostics()
    assert d["pose_jumps"] == 1 and d["stopped/stale_odom"] == 1 and d["cache_tokens"] == 7 and d["agent_skipped/blurred"] == 2


def test_a_turn_is_dropped_when_the_instruction_changes_during_it():
    nav = None

    def new_instruction():
        nav.instruct("somewhere else")
    agent = ScriptedAgent([1, 1], [2], on_step=new_instruction)
    nav, events = _nav(agent)
    frames = Frames()
    nav.instruct("go")
    _feed(nav, frames, 1.0)
    nav.turn(frames)
    assert len(nav.tracker) == 0 and nav.turns == 0        # the old instruction's actions are dropped
    agent.on_step = None
    frames.new(1.1)
    nav.turn(frames)                                       # the new episode starts and takes its turn
    assert [e["instruction"] for e in events] == ["go", "somewhere else"]
    assert agent.resets == ["go", "somewhere else"] and nav.turns == 1 and len(nav.tracker) == 1


def test_max_turns_queues_a_stop_and_no_new_frame_means_no_turn():
    agent = ScriptedAgent([2], [2])
    nav, _ = _nav(agent, max_turns=1, plan_ahead_actions=4)
    frames = Frames()
    nav.instruct("turn")
    _feed(nav, frames, 1.0)
    nav.turn(frames)
    assert [int(g.action) for g in nav.tracker.goals] == [2, 0]
    nav.turn(frames)                                       # same stamp: nothing new to see
    assert len(agent.poses) == 1


def test_failures_are_counted_and_end_or_skip():
    frames = Frames()
    nav, events = _nav(ScriptedAgent())
    nav.instruct("go")
    _feed(nav, frames, 1.0)
    nav.turn(frames)
    assert nav.skips["agent_refused"] == 1 and nav.navigating
    frames.fail = True
    frames.new(2.0)
    nav.turn(frames)
    nav.turn(frames)
    assert nav.skips["encoding"] == 1 and frames.decodes == 2   # rejected once, not decoded again

    class Broken(ScriptedAgent):
        def step(self, *a):
            raise RuntimeError("CUDA out of memory")
    frames.fail = False
    nav.agent = Broken()
    _feed(nav, frames, 3.0)
    nav.turn(frames)
    assert nav.skips["agent_error"] == 1 and not nav.navigating and events[-1]["event"] == "error"


def test_cancel_and_an_empty_instruction_end_a_running_episode():
    frames = Frames()
    nav, events = _nav(ScriptedAgent([1]))
    nav.cancel(reason="deactivated")
    assert events == []                                    # nothing ran: nothing to cancel
    nav.instruct("go")
    _feed(nav, frames, 1.0)
    nav.turn(frames)
    nav.cancel(reason="deactivated")
    assert events[-1]["event"] == "cancel" and events[-1]["reason"] == "deactivated" and events[-1]["turns"] == 1
    assert len(nav.tracker) == 0
    nav.instruct("go")
    nav.turn(frames)
    nav.instruct("   ")
    nav.turn(frames)
    assert events[-1]["event"] == "cancel" and "reason" not in events[-1] and not nav.navigating


def test_the_turn_thread_wakes_on_an_instruction_and_stops():
    agent = ScriptedAgent([1])
    nav, events = _nav(agent)
    frames = Frames()
    _feed(nav, frames, 1.0)
    nav.start_turns(frames)
    try:
        nav.instruct("go")
        for _ in range(200):
            if nav.turns:
                break
            time.sleep(0.01)
        assert nav.turns == 1 and events[0]["event"] == "start"
    finally:
        nav.stop_turns(timeout=2.0)
    assert nav._turn_thread is None


@pytest.mark.parametrize("bad", [{"control_hz": 10.0}, {"odom_timeout": 0.0}, {"plan_ahead_actions": 17},
                                 {"max_turns": -1}])
def test_the_config_refuses_values_outside_their_range(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        NavigatorConfig(**bad)


def test_the_camera_pose_is_the_mounted_one_at_the_image_stamp():
    agent = ScriptedAgent([1])
    nav, _ = _nav(agent)
    frames = Frames()
    nav.instruct("go")
    nav.odometry(0.9, np.array([5.0, 5.0, 0.0]), 0.0, now=0.9)
    nav.odometry(1.0, np.array([1.0, 2.0, math.pi / 2]), 0.0, now=1.0)
    nav.odometry(1.2, np.array([1.0, 2.1, math.pi / 2]), 0.0, now=1.2)
    frames.new(1.0)
    nav.turn(frames)
    assert np.allclose(agent.poses[0], base_camera_pose(1.0, 2.0, math.pi / 2, nav.cfg.camera))


def test_the_navigator_needs_no_ros():
    code = ("import sys, policy.streamvln.navigator; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'slowfast_ros') or m.endswith('.msg')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
