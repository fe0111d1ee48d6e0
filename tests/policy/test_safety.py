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
    """``n`` ticks of a constant command. The measured TCP is ``tcp`` when given (an arm held
    in place), else the previous output (an arm that tracks its target)."""
    out = []
    measured = f._out_pos.copy() if f.initialized else np.array([0.0, 0.0, 0.3])  # noqa: SLF001
    for i in range(n):
        t = t0 + i * DT
        pos, q = f.filter(t, cmd, quat, t, tcp if tcp is not None else measured, Q,
                          np.asarray(force, float), t)
        measured = pos
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
    measured = np.array([0.0, 0.0, 0.3])
    for i in range(400):
        t = i * DT
        z = 0.3 + 0.19 * (int(t * 60) / 60.0) if t < 0.8 else 0.3 + 0.19 * 0.8
        pos, _ = f.filter(t, np.array([0.0, goal_y, z]), Q, t, measured, Q, np.zeros(3), t)
        measured = pos                                        # the arm tracks its target
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


def test_commands_resuming_after_a_short_silence_in_contact_go_on_from_the_held_pose():
    """A gap in the commands while the tool presses 7 mm into a surface: when they resume,
    the output does not snap up to the measured pose (which would release the press)."""
    f = make(max_speed=0.25, max_accel=3.0)
    tcp = np.array([0.0, 0.0, 0.3])                               # the surface stops the tool here
    pressed = run(f, 100, np.array([0.0, 0.0, 0.293]), tcp=tcp)[-1]
    assert pressed[2] == pytest.approx(0.293, abs=1e-6)
    run(f, 60, None, t0=100 * DT, tcp=tcp)                           # 0.3 s without a command
    t = 160 * DT
    pos, _ = f.filter(t, np.array([0.0, 0.0, 0.293]), Q, t, tcp, Q, np.zeros(3), t)
    assert np.allclose(pos, pressed, atol=1e-9)                     # no jump


# ---------------------------------------------------------------- tracking bound, plant resets


def test_the_output_never_leaves_max_step_of_the_measured_tcp():
    """An arm that is blocked (it stays where it is) is never asked for more than max_step."""
    f = make(max_speed=3.0, max_accel=50.0, max_step=0.03)
    tcp = np.array([0.0, 0.0, 0.3])
    path = run(f, 400, np.array([0.4, 0.0, 0.3]), tcp=tcp)
    assert np.linalg.norm(path - tcp, axis=1).max() <= 0.03 + 1e-12
    assert f.counts["tracking"] > 0
    assert path[-1][0] == pytest.approx(0.03)          # pressing at the bound, not beyond


def test_a_reset_of_the_plant_restarts_from_the_measured_pose_without_a_lunge():
    """A sim episode reset teleports the arm home while the command is still the last
    episode's far target: the output restarts at the arm and moves off at no more than the
    speed limit, never farther than max_step from the arm."""
    f = make(max_speed=0.25, max_accel=3.0, max_step=0.05)
    far = np.array([0.3, 0.2, 0.1])
    run(f, 600, far)                                    # the last episode ended out there
    home = np.array([0.0, 0.0, 0.3])                    # the plant is reset: the arm is home
    out = []
    measured = home
    for i in range(200):                                # the command still says `far`
        t = 10.0 + i * DT
        pos, _ = f.filter(t, far, Q, t, measured, Q, np.zeros(3), t)
        out.append(pos)
        measured = pos
    out = np.array(out)
    assert f.counts["plant_reset"] == 1
    assert np.linalg.norm(out[0] - home) <= 0.25 * DT + 1e-9      # starts at the arm
    speeds = np.linalg.norm(np.diff(out, axis=0), axis=1) / DT
    assert speeds.max() <= 0.25 + 1e-9


def test_an_explicit_reset_starts_from_the_given_pose():
    f = make()
    run(f, 100, np.array([0.1, 0.0, 0.3]))
    f.reset(np.array([0.0, 0.1, 0.3]), Q)
    pos, _ = f.filter(5.0, None, None, None, np.array([0.0, 0.1, 0.3]), Q, np.zeros(3), 5.0)
    assert np.allclose(pos, [0.0, 0.1, 0.3])


@pytest.mark.parametrize("stop", ["estop", "stale_contact", "invalid_contact"])
def test_an_estop_or_a_bad_contact_reading_during_a_force_back_off_holds_the_arm(stop):
    f = make(force_limit=40.0, force_release=20.0, backoff_distance=0.02)
    tcp = np.array([0.0, 0.0, 0.3])
    push = np.array([0.0, 0.0, 60.0])                     # the surface pushes up hard
    backing = run(f, 3, np.array([0.0, 0.0, 0.3]), force=push, tcp=tcp)
    assert backing[-1][2] > 0.3                            # the back-off has started upwards
    before = backing[-1]
    t = 1.0
    for i in range(40):
        ti = t + i * DT
        if stop == "estop":
            f.set_estop(True)
            pos, _ = f.filter(ti, None, None, None, tcp, Q, push, ti)
        elif stop == "stale_contact":
            pos, _ = f.filter(ti, None, None, None, tcp, Q, push, ti - 1.0)
        else:
            pos, _ = f.filter(ti, None, None, None, tcp, Q, np.array([np.nan, 0.0, 0.0]), ti)
        assert np.allclose(pos, before), (i, pos, before)   # not another millimetre up
    assert f.counts[stop] == 40
