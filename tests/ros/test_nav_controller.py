"""The goal tracker of the nav node (pure Python): goals chain, runs of FORWARD do not stop."""
import math

import numpy as np

from policy.streamvln.actions import Action
from policy.streamvln.nav_control import JOIN_STOP_SPEED, GoalTracker, TrackerConfig

F, L, R, S = Action.MOVE_FORWARD, Action.TURN_LEFT, Action.TURN_RIGHT, Action.STOP


def _drive(tracker, pose, steps, dt=1 / 30, refill=None):
    speeds = []
    for _ in range(steps):
        if refill is not None and len(tracker) <= 1:
            refill(tracker, pose)
        v, w = tracker.command(pose, dt)
        speeds.append(v)
        pose = [pose[0] + v * dt * math.cos(pose[2]), pose[1] + v * dt * math.sin(pose[2]), pose[2] + w * dt]
    return pose, np.array(speeds)


def test_goals_chain_from_the_last_queued_goal():
    t = GoalTracker()
    t.extend([F, F, L, F], (1.0, 2.0, 0.0))
    t.extend([R, F, S, F], (9.0, 9.0, 3.0))  # chained from the queue, not from this pose; nothing after STOP
    g = t.goals
    assert len(g) == 7 and g[-1].action is S
    assert math.isclose(g[1].x, 1.5) and math.isclose(g[3].x, 1.5 + 0.25 * math.cos(math.radians(15)))
    assert math.isclose(g[4].yaw, 0.0, abs_tol=1e-12) and math.isclose(g[5].y, g[3].y)


def test_consecutive_turns_of_forward_never_stop_and_the_base_reaches_the_goals():
    t = GoalTracker(TrackerConfig(max_linear=0.3))
    pose, speeds = _drive(t, [0.0, 0.0, 0.0], 300, refill=lambda tr, p: tr.extend([F] * 4, p) if len(tr) <= 1 else None)
    start = int(np.argmax(speeds > 0.29))
    assert speeds[start:].min() > 0.25  # no stop-and-go between turns
    t2 = GoalTracker()
    t2.extend([F, F, L, L, F, S], (0.0, 0.0, 0.0))
    pose, speeds = _drive(t2, [0.0, 0.0, 0.0], 400)
    assert t2.done and speeds[-1] == 0.0
    expect = np.array([0.5 + 0.25 * math.cos(math.radians(30)), 0.25 * math.sin(math.radians(30))])
    assert np.linalg.norm(np.array(pose[:2]) - expect) < 0.06 and abs(pose[2] - math.radians(30)) < 0.06


def test_a_blocked_goal_times_out_and_is_counted():
    t = GoalTracker(TrackerConfig(goal_timeout=1.0))
    t.extend([F, L], (0.0, 0.0, 0.0))
    for _ in range(40):  # the base does not move (blocked): 40 ticks of 1/30 s
        v, w = t.command((0.0, 0.0, 0.0), 1 / 30)
    assert t.timeouts == 1 and len(t) == 1 and t.goals[0].action is L and v == 0.0 and w > 0


def _drive_turns(tracker, turns, plan_ahead, steps=600, dt=1 / 30, hold_when=None):
    """Queue ``turns`` one at a time, the next when at most ``plan_ahead`` goals are left (the
    nav node's rule, with no model latency); the caller holds (commands zero) for one tick the
    first time ``hold_when(tracker)`` is true."""
    pose, queue, v, held = [0.0, 0.0, 0.0], list(turns), 0.0, False
    for _ in range(steps):
        if queue and len(tracker) <= plan_ahead:
            tracker.extend(queue.pop(0), pose)
        if hold_when is not None and not held and hold_when(tracker):
            tracker.hold()
            v, held = 0.0, True
            continue
        v, w = tracker.command(pose, dt, speed=v)
        pose = [pose[0] + v * dt * math.cos(pose[2]), pose[1] + v * dt * math.sin(pose[2]), pose[2] + w * dt]
    return pose


def test_joins_of_forward_turns_are_measured_and_a_late_turn_is_a_stop():
    # planned ahead: three FORWARD turns make two joins, the base never slows at them
    t = GoalTracker()
    _drive_turns(t, [[F] * 4] * 3, plan_ahead=2)
    assert [j.turn for j in t.joins] == [1, 2] and t.join_stops == 0
    assert min(j.min_cmd for j in t.joins) > 0.25 and min(j.min_measured for j in t.joins) > 0.25
    # the next turn queued only once the queue is empty: the base stops at every join
    t = GoalTracker()
    _drive_turns(t, [[F] * 4] * 3, plan_ahead=0)
    assert len(t.joins) == 2 and t.join_stops == 2 and max(j.min_cmd for j in t.joins) < JOIN_STOP_SPEED


def test_only_forward_to_forward_joins_count_and_a_hold_inside_one_is_a_stop():
    t = GoalTracker()
    _drive_turns(t, [[F, F, F, F], [L, F, F, F], [F, F, F, L], [F, F, F, F], [R, F, F, F]], plan_ahead=2, steps=900)
    assert [j.turn for j in t.joins] == [2] and t.join_stops == 0  # 2->3 only: 1->2 starts with L, 3 ends with L, 4->5 starts with R
    t = GoalTracker()
    turn1_last_is_head = lambda tr: len(tr.goals) > 1 and tr.goals[1].turn != tr.goals[0].turn  # noqa: E731
    _drive_turns(t, [[F] * 4] * 2, plan_ahead=2, hold_when=turn1_last_is_head)
    assert len(t.joins) == 1 and t.join_stops == 1
    t.clear()
    assert t.joins  # clearing the queue (a pose jump) keeps the episode's statistics


def test_a_goal_queued_after_a_wait_gets_its_whole_timeout():
    t = GoalTracker(TrackerConfig(goal_timeout=1.0))
    for _ in range(90):  # 3 s with nothing queued (a slow turn, say)
        t.command((0.0, 0.0, 0.0), 1 / 30)
    t.extend([F], (0.0, 0.0, 0.0))
    v, _ = t.command((0.0, 0.0, 0.0), 1 / 30)
    assert t.timeouts == 0 and len(t) == 1 and v > 0
