"""Tactile field and wrist wrench against contacts set up in MuJoCo (wipe pad on the table)."""
from __future__ import annotations

import numpy as np
import pytest

from sim import SimConfig, SimEnv
from slowfast_data.geometry import axis_angle_quat, wxyz_to_xyzw


def _env():
    """Wipe scene without noise, the pad hovering 1 cm above the table centre (approached
    from above, so no friction preload)."""
    env = SimEnv(SimConfig(task="wipe", seed=0, perturb=False, render=False, wrench_noise=0.0, tactile_noise=0.0))
    env.set_target("arm", [0.0, 0.0, 0.01], [0, 0, 0, 1])
    env.step(500)
    return env


def _press(env, depth, x_off=0.0, y_off=0.0, quat=(0, 0, 0, 1), steps=600):
    env.set_target("arm", [x_off, y_off, -depth], quat)
    env.step(steps)
    return env.observe("arm")


def _contact_centre_pad(env):
    """Ground-truth normal-force-weighted contact centre in the pad frame."""
    ids = env._ids["arm"]
    pos, fw = env._pad_contacts(ids["pad_geom"])
    R = env.data.site_xmat[ids["pad_site"]].reshape(3, 3)
    xy = ((pos - env.data.site_xpos[ids["pad_site"]]) @ R)[:, :2]
    fn = -(fw @ R)[:, 2]
    return (fn[:, None] * xy).sum(0) / fn.sum(), (fw @ R)[:, :2].sum(0)


@pytest.mark.parametrize("tilt_deg", [0.0, 4.0])
def test_tactile_press_spreads_radially_and_grows_with_load(tilt_deg):
    env = _env()
    q = wxyz_to_xyzw(axis_angle_quat([0, 1, 0], np.deg2rad(tilt_deg)))   # tilt: one edge presses harder
    env.set_target("arm", [0, 0, 0.01], q)
    env.step(300)
    mags, loads = [], []
    for depth in (0.004, 0.008, 0.012):
        s = _press(env, depth, quat=q)
        centre, _ = _contact_centre_pad(env)
        m, d = s.tactile[:, :2].astype(float), s.tactile[:, 2:].astype(float)
        r = m - centre
        far = np.linalg.norm(r, axis=1) > 0.008
        radial = np.einsum("ij,ij->i", d[far], r[far]) / np.linalg.norm(r[far], axis=1)
        # markers move outward from the pressure centre ...
        assert np.mean(radial > 0) >= 0.95, (depth, np.mean(radial > 0))
        cos = radial / np.maximum(np.linalg.norm(d[far], axis=1), 1e-12)
        assert np.median(cos) > 0.95
        mags.append(np.linalg.norm(d, axis=1).mean())
        loads.append(env.contact_normal_force("arm"))
    # ... by more under more load
    assert loads[0] < loads[1] < loads[2]
    assert mags[0] < mags[1] < mags[2]
    if tilt_deg:
        # pressure centre sits off the pad centre, on the side the tilt presses down
        assert abs(centre[0]) > 0.003


@pytest.mark.parametrize("direction", [(1.0, 0.0), (0.0, 1.0), (-0.7071, 0.7071)])
def test_tactile_shear_follows_tangential_force(direction):
    env = _env()
    base = _press(env, 0.01)
    d0 = base.tactile[:, 2:].astype(float)
    shears, mags = [], []
    u = np.array(direction)
    for off in (0.0005, 0.001, 0.002):          # below the friction limit: the pad sticks
        s = _press(env, 0.01, x_off=off * u[0], y_off=off * u[1])
        _, ft_pad = _contact_centre_pad(env)
        mean_shift = (s.tactile[:, 2:].astype(float) - d0).mean(0)
        # markers move along the tangential contact force on the pad (pad frame) ...
        cos = mean_shift @ ft_pad / (np.linalg.norm(mean_shift) * np.linalg.norm(ft_pad))
        assert cos > 0.97, cos
        shears.append(np.linalg.norm(ft_pad))
        mags.append(np.linalg.norm(mean_shift))
    # ... and more so under more shear
    assert shears[0] < shears[1] < shears[2]
    assert mags[0] < mags[1] < mags[2]
    # the pad is dragged along +u in the world: friction on it (and marker motion) is along -u
    R = env.data.site_xmat[env._ids["arm"]["pad_site"]].reshape(3, 3)
    shift_world = R[:, :2] @ mean_shift
    assert shift_world[:2] @ u < 0


def test_wrench_matches_contact_normal_force():
    """Static press on the flat table: the wrist force along the tool z equals the ground-truth
    pad-table normal force within 2 % + 0.3 N (with the default sensor noise); lateral forces
    and torques stay near zero."""
    env = SimEnv(SimConfig(task="wipe", seed=0, perturb=False, render=False))
    env.set_target("arm", [0.0, 0.0, 0.01], [0, 0, 0, 1])
    env.step(500)
    for depth in (0.003, 0.007, 0.012, 0.02):
        s = _press(env, depth, steps=800)
        fn = env.contact_normal_force("arm")
        assert fn > 1.0
        assert abs(s.wrench[2] - fn) <= 0.02 * fn + 0.3, (depth, s.wrench[2], fn)
        assert np.all(np.abs(s.wrench[:2]) < 0.3)
        assert np.all(np.abs(s.wrench[3:]) < 0.05)
        # the coupling is a 1000 N/m spring: force = stiffness x (TCP height - commanded height)
        assert fn == pytest.approx(1000.0 * (s.tcp_pos[2] + depth), rel=0.03)


def test_lift_wrench_normal_along_pad():
    env = SimEnv(SimConfig(task="lift", seed=0, perturb=False, render=False, wrench_noise=0.0))
    spec = env.task_spec()
    for arm in env.arms:
        pos, quat = env.home_pose(arm)
        inward = -np.sign(pos[1])
        env.set_target(arm, pos + np.array([0, inward * 0.05, 0]), quat)
    env.step(800)
    from slowfast_data.geometry import quat_wxyz_to_matrix, xyzw_to_wxyz

    for arm in env.arms:
        s = env.observe(arm)
        n = quat_wxyz_to_matrix(xyzw_to_wxyz(spec["pad_quat_tool_xyzw"][arm]))[:, 2]
        fn = -float(s.wrench[:3] @ n)
        assert fn == pytest.approx(env.contact_normal_force(arm), rel=0.02, abs=0.3)
        assert fn > 5.0
