"""Chunk alignment by observation stamp, handover without jumps, expiry -> hold."""
import numpy as np
import pytest

from slowfast_data.geometry import absolute_to_relative
from policy.reactive import Chunk, ReactiveExecutor

DT = 0.02          # dataset step (50 Hz)
H = 32
START = np.array([0.1, 0.0, 0.3, 0.0, 0.0, 0.0, 1.0])


def action_chunk(obs_stamp, x0, vx=0.1):
    """A chunk that moves along x at vx from x0: step i is at x0 + vx * i * DT."""
    poses = np.tile(START, (H, 1))
    poses[:, 0] = x0 + vx * DT * np.arange(H)
    start = START.copy()
    start[0] = x0
    return Chunk("action", absolute_to_relative(poses, start), obs_stamp, start)


def test_a_chunk_stamped_100ms_in_the_past_is_entered_at_the_right_step():
    ex = ReactiveExecutor(None, H, DT, blend_s=0.0)
    now = 10.0
    assert ex.submit(action_chunk(now - 0.100, x0=0.0), now) is None
    target = ex.tick(now, None)
    assert ex.last_step_index == 5                       # 100 ms / 20 ms
    assert target[0] == pytest.approx(0.1 * 0.100, abs=1e-6)   # where the chunk is at 'now'
    # between steps the command interpolates (smooth at any control rate)
    target = ex.tick(now + 0.005, None)
    assert target[0] == pytest.approx(0.1 * 0.105, abs=1e-6)


def test_handover_blends_without_a_jump():
    ex = ReactiveExecutor(None, H, DT, blend_s=0.1)
    t, rate = 0.0, 200.0
    ex.submit(action_chunk(0.0, x0=0.0), 0.0)
    cmds = []
    for i in range(200):
        t = i / rate
        if i == 60:   # a new chunk planned 40 ms ago from a different place (5 mm off)
            assert ex.submit(action_chunk(t - 0.04, x0=0.1 * (t - 0.04) + 0.005), t) is None
        cmd = ex.tick(t, None)
        if cmd is not None:
            cmds.append(cmd[0])
    steps = np.abs(np.diff(cmds))
    nominal = 0.1 / rate
    assert steps.max() < nominal + 0.005 / (0.1 * rate) + 1e-6   # the 5 mm offset spread over the 100 ms window
    assert steps[60] < 3 * nominal                      # no jump at the handover tick


def test_without_blending_the_same_offset_would_jump():
    ex = ReactiveExecutor(None, H, DT, blend_s=0.0)
    ex.submit(action_chunk(0.0, x0=0.0), 0.0)
    a = ex.tick(0.3, None)[0]
    ex.submit(action_chunk(0.26, x0=0.1 * 0.26 + 0.005), 0.3)
    b = ex.tick(0.3, None)[0]
    assert b - a == pytest.approx(0.005, abs=1e-6)      # the test above is not vacuous


def test_expired_chunk_holds_and_bad_chunks_are_rejected_and_counted():
    ex = ReactiveExecutor(None, H, DT, blend_s=0.0)
    assert ex.tick(0.0, None) is None                   # no chunk: hold
    ex.submit(action_chunk(0.0, 0.0), 0.0)
    assert ex.tick(H * DT + 0.01, None) is None         # ran out: hold
    bad = action_chunk(1.0, 0.0)
    assert ex.submit(Chunk("action", bad.data[:10], 1.0, bad.start_pose), 1.0) == "wrong_shape"
    nan = action_chunk(1.0, 0.0)
    nan.data[3, 0] = np.nan
    assert ex.submit(nan, 1.0) == "nonfinite_chunk"
    assert ex.submit(action_chunk(2.0, 0.0), 5.0) == "expired"
    assert ex.submit(Chunk("latent", np.zeros((8, 4), np.float32), 1.0, START), 1.0) == "latent_chunk_without_decoder"
    assert ex.rejected == {"wrong_shape": 1, "nonfinite_chunk": 1, "expired": 1, "latent_chunk_without_decoder": 1}


def test_the_per_tick_conversion_matches_the_batched_geometry():
    from slowfast_data.geometry import absolute_to_relative, relative_to_absolute
    from slowfast_data.geometry import quat_to_matrix_one, rel_to_abs_one

    rng = np.random.default_rng(3)
    for _ in range(20):
        q0, q1 = rng.normal(size=4), rng.normal(size=4)
        start = np.concatenate([rng.normal(size=3), q0 / np.linalg.norm(q0)])
        pose = np.concatenate([rng.normal(size=3), q1 / np.linalg.norm(q1)])
        rel = absolute_to_relative(pose[None], start)[0]
        fast = rel_to_abs_one(rel, [(start[:3], quat_to_matrix_one(start[3:]))])
        slow = relative_to_absolute(rel, start)
        assert np.allclose(fast[:3], slow[:3], atol=1e-5)
        assert min(np.abs(fast[3:] - slow[3:]).max(), np.abs(fast[3:] + slow[3:]).max()) < 1e-5


def test_a_chunk_submitted_without_blend_takes_over_at_once_and_its_seam_is_measured():
    """submit(blend=False), as for a spliced chunk: the first tick commands the new chunk
    alone (no mix with the old one), and the handover's seam is still recorded."""
    from policy.reactive import ReactiveExecutor

    def run(blend):
        ex = ReactiveExecutor(None, H, DT, blend_s=0.2)
        assert ex.submit(action_chunk(1.0, 0.0), 1.0) is None
        ex.tick(1.05, None)
        assert ex.submit(action_chunk(1.1, 0.05), 1.1, blend=blend) is None
        return ex, ex.tick(1.1, None)

    blended_ex, blended = run(True)
    at_once_ex, at_once = run(False)
    alone = ReactiveExecutor(None, H, DT, blend_s=0.2)
    alone.submit(action_chunk(1.1, 0.05), 1.1)
    np.testing.assert_allclose(at_once, alone.tick(1.1, None))          # the new chunk's command alone
    assert not np.allclose(blended, at_once)                            # the blend starts at the old one
    assert at_once_ex.previous is None and blended_ex.previous is not None
    assert len(at_once_ex.handover_jumps) == len(blended_ex.handover_jumps) == 1
    assert at_once_ex.handover_jumps[0] == pytest.approx(blended_ex.handover_jumps[0])


def test_a_handover_records_the_rotation_between_the_two_commands_too():
    """The seam is a pose: its distance (``handover_jumps``, m) and its rotation
    (``handover_turns``, rad), each the largest over the arms."""
    from slowfast_data.geometry import axis_angle_quat, relative_to_absolute, wxyz_to_xyzw

    def turned(chunk, deg):
        poses = relative_to_absolute(chunk.data, chunk.start_pose)
        q = wxyz_to_xyzw(axis_angle_quat([0.0, 0.0, 1.0], np.radians(deg)))
        poses[:, 3:] = q
        start = np.concatenate([chunk.start_pose[:3], q])
        return Chunk("action", absolute_to_relative(poses, start), chunk.obs_stamp, start)

    ex = ReactiveExecutor(None, H, DT, blend_s=0.0)
    assert ex.submit(turned(action_chunk(1.0, 0.0), 0.0), 1.0) is None
    ex.tick(1.05, None)
    assert ex.submit(turned(action_chunk(1.1, 0.05), 3.0), 1.1) is None
    ex.tick(1.1, None)
    assert len(ex.handover_turns) == len(ex.handover_jumps) == 1
    assert np.degrees(ex.handover_turns[0]) == pytest.approx(3.0, abs=1e-3)


def test_quat_angle_takes_stacks_and_either_sign():
    from slowfast_data.geometry import axis_angle_quat, quat_angle

    a = axis_angle_quat([1.0, 0.0, 0.0], 0.3)
    b = axis_angle_quat([1.0, 0.0, 0.0], -0.2)
    assert quat_angle(a, b) == pytest.approx(0.5)
    assert quat_angle(a, -b) == pytest.approx(0.5)
    np.testing.assert_allclose(quat_angle(np.stack([a, b]), np.stack([b, b])), [0.5, 0.0], atol=1e-7)
