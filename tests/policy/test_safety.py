"""The safety filter clamps each limit, holds on stale or invalid input and on e-stop, and
never makes the output jump."""
import numpy as np
import pytest

from policy.safety import SafetyConfig, SafetyFilter

Q = np.array([0.0, 0.0, 0.0, 1.0])
DT = 0.005


def make(**kw):
    cfg = SafetyConfig(workspace_lo=(-0.5, -0.5, 0.0), workspace_hi=(0.5, 0.5, 0.8), **kw)
    f = SafetyFilter(cfg)
    f.reset(np.array([0.0, 0.0, 0.3]), Q)
    return f


def run(f, n, cmd, t0=0.0, force=(0.0, 0.0, 0.0), tcp=None, quat=Q):
    out = []
    for i in range(n):
        t = t0 + i * DT
        pos, q = f.filter(t, cmd, quat, t, tcp if tcp is not None else np.array([0.0, 0.0, 0.3]), Q,
                          np.asarray(force, float), t)
        out.append(pos)
    return np.array(out)


def test_speed_and_acceleration_limits_shape_a_far_command():
    f = make(max_speed=0.2, max_accel=2.0)
    path = run(f, 600, np.array([0.4, 0.0, 0.3]))
    v = np.linalg.norm(np.diff(path, axis=0), axis=1) / DT
    assert v.max() <= 0.2 + 1e-9
    assert np.all(np.diff(v) <= 2.0 * DT + 1e-9)          # accelerates no faster than the limit
    assert f.counts["speed"] > 0 and f.counts["acceleration"] > 0
    assert path[-1][0] == pytest.approx(0.4, abs=1e-3)      # and gets there
    assert path[:, 0].max() <= 0.4 + 1e-9                   # without overshoot


def test_workspace_is_clamped_and_counted():
    f = make(max_speed=3.0, max_accel=50.0)
    path = run(f, 400, np.array([2.0, 0.0, -1.0]))
    assert path[:, 0].max() <= 0.5 and path[:, 2].min() >= 0.0
    assert f.counts["workspace"] > 0


@pytest.mark.parametrize("bad", [np.array([np.nan, 0.0, 0.3]), np.array([np.inf, 0.0, 0.3])])
def test_nonfinite_command_holds_the_last_safe_pose(bad):
    f = make()
    before = run(f, 50, np.array([0.05, 0.0, 0.3]))[-1]
    held = run(f, 20, bad, t0=1.0)
    assert np.allclose(held, before)
    assert f.counts["nonfinite_command"] == 20 and f.holding


def test_no_command_and_stale_contact_hold():
    f = make()
    last = run(f, 50, np.array([0.05, 0.0, 0.3]))[-1]
    pos, _ = f.filter(1.0, np.array([0.2, 0, 0.3]), Q, cmd_stamp=0.5, tcp_pos=last, tcp_quat=Q,
                      force_world=np.zeros(3), contact_stamp=1.0)        # command 0.5 s old
    assert np.allclose(pos, last) and "no_command" in f.last_reasons
    pos, _ = f.filter(1.01, np.array([0.2, 0, 0.3]), Q, cmd_stamp=1.01, tcp_pos=last, tcp_quat=Q,
                      force_world=np.zeros(3), contact_stamp=0.9)        # contact 110 ms old
    assert np.allclose(pos, last) and "stale_contact" in f.last_reasons
    pos, _ = f.filter(1.02, np.array([0.2, 0, 0.3]), Q, cmd_stamp=1.02, tcp_pos=last, tcp_quat=Q,
                      force_world=np.array([np.nan, 0, 0]), contact_stamp=1.02)
    assert np.allclose(pos, last) and "invalid_contact" in f.last_reasons


def test_force_limit_backs_off_along_the_force_holds_then_resumes_without_a_jump():
    f = make(force_limit=30.0, force_release=15.0, release_time=0.1, backoff_distance=0.01, max_speed=0.5)
    tcp = np.array([0.0, 0.0, 0.3])
    run(f, 10, tcp, tcp=tcp)
    # The surface pushes up on the tool with 50 N while the command pushes down.
    path = run(f, 40, np.array([0.0, 0.0, 0.25]), t0=1.0, force=(0.0, 0.0, 50.0), tcp=tcp)
    assert path[-1][2] == pytest.approx(0.31, abs=1e-6)      # 1 cm up, along the force
    assert f.counts["force_limit"] == 40
    # Force drops below release but not for long enough: still held.
    path = run(f, 10, np.array([0.0, 0.0, 0.25]), t0=2.0, force=(0.0, 0.0, 5.0), tcp=tcp)
    assert path[-1][2] == pytest.approx(0.31, abs=1e-6)
    path = run(f, 100, np.array([0.0, 0.0, 0.25]), t0=2.05, force=(0.0, 0.0, 5.0), tcp=tcp)
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    assert steps.max() <= 0.5 * DT + 1e-9                   # resumes under the speed limit
    assert path[-1][2] < 0.3


def test_estop_is_latched_until_released_and_restarts_from_the_measured_pose():
    f = make()
    run(f, 20, np.array([0.05, 0.0, 0.3]))
    f.set_estop(True)
    held = run(f, 30, np.array([0.3, 0.0, 0.3]), t0=1.0)
    assert np.allclose(held, held[0]) and f.counts["estop"] == 30
    measured = np.array([0.02, 0.01, 0.29])
    f.set_estop(False, measured, Q)
    out, _ = f.filter(2.0, np.array([0.3, 0.0, 0.3]), Q, 2.0, measured, Q, np.zeros(3), 2.0)
    assert np.allclose(out, measured)                       # first output after release = where the arm is


def test_rotation_rate_is_limited():
    f = make(max_angular_speed=1.0)
    target = np.array([0.0, 0.0, np.sin(0.5), np.cos(0.5)])   # 1 rad about z
    prev = Q
    for i in range(50):
        _, q = f.filter(i * DT, np.array([0.0, 0.0, 0.3]), target, i * DT, np.array([0.0, 0.0, 0.3]), Q,
                        np.zeros(3), i * DT)
        angle = 2 * np.arccos(min(1.0, abs(float(np.dot(q, prev)))))
        assert angle <= 1.0 * DT + 1e-6
        prev = q


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="max_speed"):
        SafetyConfig(max_speed=-1.0)
    with pytest.raises(ValueError, match="workspace"):
        SafetyConfig(workspace_lo=(0, 0, 1), workspace_hi=(1, 1, 0))
    with pytest.raises(ValueError, match="force_release"):
        SafetyConfig(force_limit=10.0, force_release=20.0)


def test_fast_motion_on_one_axis_does_not_make_another_overshoot():
    # A lift seen through teleop: the target climbs in 60 Hz steps (a staircase at 0.19 m/s)
    # while the squeeze axis settles 5 mm inward. With one acceleration budget for the whole
    # vector the squeeze axis starved and overshot (in the sim: a 27 N spike, then a dropped box).
    f = make(max_speed=0.25, max_accel=3.0)
    ys, goal_y = [], -0.005
    for i in range(400):
        t = i * DT
        z = 0.3 + 0.19 * (int(t * 60) / 60.0) if t < 0.8 else 0.3 + 0.19 * 0.8
        pos, _ = f.filter(t, np.array([0.0, goal_y, z]), Q, t, np.array([0.0, 0.0, 0.3]), Q, np.zeros(3), t)
        ys.append(pos[1])
    ys = np.array(ys)
    assert ys.min() >= goal_y - 1e-9                          # never past the squeeze goal
    assert ys[-1] == pytest.approx(goal_y, abs=1e-6)


def test_commands_resuming_after_a_silence_start_from_the_measured_pose():
    f = make(max_speed=0.25, max_accel=3.0)
    run(f, 50, np.array([0.0, 0.0, 0.35]))                     # tracks a command to z = 0.35
    held = run(f, 60, None, t0=50 * DT)                           # silence: holds the last output
    assert f.counts["no_command"] > 0 and held[-1][2] > 0.32
    moved = np.array([0.1, 0.05, 0.2])                           # meanwhile the arm was moved (a reset)
    t = 110 * DT
    pos, _ = f.filter(t, moved + [0.0, 0.0, 0.001], Q, t, moved, Q, np.zeros(3), t)
    assert np.allclose(pos, moved, atol=1e-9)                    # no drag back towards z = 0.35
