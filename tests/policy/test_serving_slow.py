"""rdp_slow's cycle bookkeeping without ROS (policy.serving.SlowCycle): which observations are
planned from, what is skipped and why, a broken model's streak, and the diagnostics that say
why nothing comes out."""
from __future__ import annotations

import numpy as np
import pytest

from policy.serving import STARVED_S, ArmSnapshot, SlowCycle


class _Planner:
    """Stands in for SlowPlanner: answers ``plan`` with what it is told to."""

    def __init__(self):
        self.answer = (np.zeros((4, 7)), None)
        self.calls = []
        self.latency_s = 0.05
        self.guided = 2

    def plan(self, now, t_obs, history, images):
        self.calls.append((now, t_obs))
        return self.answer

    def latency_estimate(self):
        return 0.08

    def inpaint_pull_s(self):
        return 0.16


def _snap(pose=1.0, wrench=1.0, tactile=1.0):
    return {"arm": ArmSnapshot(pose_stamp=pose, wrench_stamp=wrench, tactile_stamp=tactile)}


def test_a_cycle_plans_from_the_oldest_pose_once_all_inputs_are_in():
    book, planner = SlowCycle(max_obs_age=0.25), _Planner()
    assert book.plan(1.0, _snap(tactile=float("nan")), planner, None, None)[2] == "waiting_for_inputs"
    snap = {"left": ArmSnapshot(pose_stamp=1.0, wrench_stamp=1.0, tactile_stamp=1.0),
            "right": ArmSnapshot(pose_stamp=0.98, wrench_stamp=1.0, tactile_stamp=1.0)}
    t_obs, chunk, why = book.plan(1.05, snap, planner, None, None)
    assert (t_obs, why) == (0.98, None) and chunk.shape == (4, 7)
    assert planner.calls == [(1.05, 0.98)]
    assert list(book.latency_ms) == [pytest.approx(50.0)]
    assert book.skipped == {"waiting_for_inputs": 1}


def test_stale_repeated_and_pre_activation_observations_are_skipped():
    book, planner = SlowCycle(max_obs_age=0.25), _Planner()
    assert book.plan(1.3, _snap(pose=1.0), planner, None, None)[2] == "stale_observation"
    t_obs, _, why = book.plan(1.1, _snap(pose=1.0), planner, None, None)
    assert why is None
    book.published_chunk(t_obs, 1.12)
    assert book.published == 1 and list(book.obs_age_ms) == [pytest.approx(120.0)]
    assert book.plan(1.2, _snap(pose=1.0), planner, None, None)[2] == "no_new_observation"
    book.activate(5.0)                                        # nothing made before now
    assert book.plan(5.01, _snap(pose=4.9), planner, None, None)[2] == "no_new_observation"
    assert book.plan(5.02, _snap(pose=5.01), planner, None, None)[2] is None
    assert len(planner.calls) == 2
    assert book.skipped == {"stale_observation": 1, "no_new_observation": 2}


def test_a_broken_model_counts_a_streak_until_a_good_chunk():
    book, planner = SlowCycle(max_obs_age=0.25), _Planner()
    planner.answer = (None, "nonfinite_chunk")
    for i in range(3):
        assert book.plan(1.0 + i, _snap(pose=1.0 + i), planner, None, None)[1:] == (None, "nonfinite_chunk")
    assert book.nonfinite_streak == 3 and not book.latency_ms
    values, level, message, _ = book.diagnostics(4.0, True, planner, "blend", 0.0)
    assert level == "error" and "3 chunks in a row" in message
    planner.answer = (None, "late")                            # another planner refusal: counted, no streak
    book.plan(5.0, _snap(pose=5.0), planner, None, None)
    assert book.nonfinite_streak == 3 and book.skipped["late"] == 1
    planner.answer = (np.zeros((4, 7)), None)
    book.plan(6.0, _snap(pose=6.0), planner, None, None)
    assert book.nonfinite_streak == 0


def test_diagnostics_say_why_no_chunk_came():
    book, planner = SlowCycle(max_obs_age=0.25), _Planner()
    values, level, message, starved = book.diagnostics(0.0, False, planner, "inpaint", 6.0)
    assert (level, message, starved) == ("warn", "inactive: not planning", None)
    assert np.isnan(values["inference_ms_p50"]) and values["chunks_published"] == 0
    assert values["handover"] == "inpaint" and values["chunks_inpainted"] == 2
    assert values["latency_estimate_ms"] == pytest.approx(80.0) and values["rate_hz"] == 6.0
    assert values["inpaint_pull_ms"] == pytest.approx(160.0)

    book.skip("bad_image")                                     # before the activation: not in the reason
    book.activate(10.0)
    for _ in range(3):
        book.skip("waiting_for_inputs")
    book.skip("stale_observation")
    assert book.diagnostics(10.0 + STARVED_S - 0.1, True, planner, "blend", 6.0)[1] == "ok"
    values, level, message, starved = book.diagnostics(10.0 + STARVED_S + 1, True, planner, "blend", 6.0)
    assert level == "warn" and starved == message
    assert message == "no chunk for 4 s (skipped: waiting_for_inputs 3, stale_observation 1)"
    assert values["skipped/bad_image"] == 1 and values["skipped/waiting_for_inputs"] == 3

    book.published_chunk(13.9, 14.0)                           # a chunk: quiet again
    assert book.diagnostics(14.5, True, planner, "blend", 6.0)[1] == "ok"
    assert book.diagnostics(14.0 + STARVED_S + 1, True, planner, "blend", 6.0)[2] == \
        "no chunk for 4 s (skipped: no cycle due)"

    values, level, message, _ = book.diagnostics(14.5, True, planner, "blend", 6.0, failure=ValueError("x"))
    assert (level, message, values["failure"]) == ("error", "planning loop failed", "ValueError('x')")


class _Policy:
    """A DP-kind slow policy with no camera: two poses and two wrenches of history."""

    meta = {"model_type": "dp", "fps": 25.0, "horizon": 16, "obs_stride": 1, "contact": "wrench"}
    cameras: list = []
    n_obs, history = 2, 2

    def predict(self, frames, tcp, contact, **kw):
        return np.zeros((16, 9), np.float32)


def test_no_observation_window_reaches_back_before_the_episode_start():
    """A sim holds the home pose before an episode starts without stepping its physics: a chunk
    planned from the hold would run on through it, and the arm would start the episode that far
    into its chunk (over ROS 2, DP first touched the table 0.5 s early and lost the path)."""
    from types import SimpleNamespace

    from policy.serving import ArmHistory, SlowPlanner

    planner, history = SlowPlanner(_Policy(), rate_hz=4.0), ArmHistory(["arm"])
    for k in range(60):          # readings every 5 ms from 0.9 s: the hold, then the episode
        history.add_state("arm", 0.9 + 0.005 * k, SimpleNamespace(tcp_pos=np.zeros(3), tcp_quat=np.array([0, 0, 0, 1.0]),
                                                                    wrench=np.zeros(6), tactile=np.zeros((0, 4))))
    planner.restart(not_before=1.0)
    assert planner.plan(1.02, 1.02, history, None) == (None, "before_episode_start")   # window from 0.98
    chunk, why = planner.plan(1.05, 1.04, history, None)                                # window from 1.0
    assert why is None and chunk.shape == (16, 9)
    planner.restart()                                                                   # no start stamp: any
    assert planner.plan(1.02, 1.02, history, None)[1] is None
