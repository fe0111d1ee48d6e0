"""The arm embodiment: the packaged Panda model, the 1 kHz Cartesian impedance controller
(tracking, saturation, limits, singularities, bad input), the wrist F/T sensor and the
experts on the arms (wipe: one arm, lift: two)."""
from __future__ import annotations

import numpy as np
import pytest

from sim import SimConfig, SimEnv, make_expert
from sim.arm import PANDA_DIR, joint_names
from sim.runner import run_episode


def _env(**kw) -> SimEnv:
    kw = {"task": "wipe", "embodiment": "arm", "perturb": False, "render": False, "wrench_noise": 0.0,
          "tactile_noise": 0.0, **kw}
    return SimEnv(SimConfig(**kw))


def _ctl(env, arm="arm"):
    return env._arm_ctl[arm]


def _steps_within_limits(env, n, arm="arm"):
    """Step ``n`` times; every commanded torque finite and within the arm's torque limits."""
    ctl = _ctl(env, arm)
    worst = 0.0
    for _ in range(n):
        env.step(1)
        tau = env.joint_state(arm)["effort"]
        assert np.all(np.isfinite(tau)), tau
        worst = max(worst, float(np.max(np.abs(tau) / ctl.tau_max)))
        assert np.all(np.isfinite(env.data.qpos)) and np.all(np.isfinite(env.data.qvel))
    return worst


def test_the_packaged_panda_model_loads_with_its_limits():
    assert (PANDA_DIR / "panda.xml").is_file() and (PANDA_DIR / "LICENSE").is_file()
    assert len(list((PANDA_DIR / "meshes").glob("link*.stl"))) == 8
    env = _env()
    js = env.joint_state("arm")
    assert js["name"] == list(joint_names("arm")) and js["position"].shape == (7,)
    np.testing.assert_allclose(_ctl(env).tau_max, [80, 80, 80, 80, 80, 12, 12])
    # the joint ranges are read in radians (the scene's compiler), e.g. joint 4 in [-3.07, -0.07]
    np.testing.assert_allclose([_ctl(env).q_lo[3], _ctl(env).q_hi[3]], [-3.0718, -0.0698])
    # the episode starts at the home pose, held by the controller
    p, _q = env.home_pose("arm")
    np.testing.assert_allclose(env.observe("arm").tcp_pos, p, atol=1e-3)


def test_unknown_embodiment_is_rejected():
    with pytest.raises(ValueError, match="embodiment"):
        SimConfig(embodiment="gantry")


def test_tracks_a_reachable_target_in_free_space():
    env = _env()
    p, q = env.home_pose("arm")
    target = p + np.array([0.08, 0.05, 0.06])
    env.set_target("arm", target, q)
    env.step(2000)
    s = env.observe("arm")
    assert np.linalg.norm(s.tcp_pos - target) < 2e-3
    assert abs(abs(float(np.dot(s.tcp_quat, q))) - 1.0) < 1e-4          # orientation held
    assert np.linalg.norm(s.tcp_linvel) < 5e-3
    st = env.controller_status("arm")
    assert st["steps"] == 2000 and st["nonfinite"] == 0 and st["joint_limit"] == 0


def test_unreachable_target_saturates_within_limits_and_recovers():
    env = _env()
    lo, hi = env.workspace("arm")
    p_home, q = env.home_pose("arm")
    env.set_target("arm", hi, q)              # the far corner of the workspace: beyond the arm's reach
    worst = _steps_within_limits(env, 2500)
    assert worst <= 1.0 + 1e-12
    st = env.controller_status("arm")
    assert st["wrench_saturated"] > 0, st      # reported, not an unbounded pull
    assert st["nonfinite"] == 0
    assert np.linalg.norm(env.observe("arm").tcp_pos - hi) > 0.05      # it really is out of reach
    env.set_target("arm", p_home, q)
    env.step(3000)
    assert np.linalg.norm(env.observe("arm").tcp_pos - p_home) < 5e-3


def test_nan_target_is_rejected_before_the_controller_and_the_arm_holds():
    env = _env()
    p, q = env.home_pose("arm")
    with pytest.raises(ValueError, match="NaN"):
        env.set_target("arm", [np.nan, 0.0, 0.1], q)
    _steps_within_limits(env, 200)
    np.testing.assert_allclose(env.observe("arm").tcp_pos, p, atol=1e-3)
    assert env.controller_status("arm")["nonfinite"] == 0


def test_controller_guards_a_non_finite_result():
    """Straight to the controller: a NaN target (were it to get past the checks) gives finite
    torques within limits, and is counted."""
    import mujoco

    env = _env()
    ctl, m, d = _ctl(env), env.model, env.data
    mujoco.mj_step1(m, d)
    tau = ctl.compute(m, d, np.array([np.nan, 0.0, 0.0]), np.array([1.0, 0, 0, 0]))
    assert np.all(np.isfinite(tau)) and np.all(np.abs(tau) <= ctl.tau_max)
    assert ctl.status.nonfinite == 1


def test_near_singular_posture_is_flagged_and_torques_stay_bounded():
    """The arm stretched straight up (joint 4 at its stop, -0.07 rad, the others 0: the elbow
    singularity as close as the Panda's range allows) against the home posture: the smallest
    singular value of J falls by an order of magnitude and, under a threshold between the two,
    that step is flagged; a far target there still gives bounded, finite torques."""
    import dataclasses

    import mujoco

    from sim.arm_control import CartesianImpedanceController

    env = _env()
    m, d, base = env.model, env.data, _ctl(env)
    sig = []
    for q in (base.q_rest, [0.0, 0.0, 0.0, -0.0698, 0.0, 0.0, 0.0]):
        d.qpos[base.qadr] = q
        d.qvel[:] = 0.0
        mujoco.mj_step1(m, d)
        base.compute(m, d, np.array([0.3, 0.0, 0.2]), np.array([1.0, 0, 0, 0]))
        sig.append(base.status.min_sigma)
    assert sig[1] < 0.25 * sig[0]
    cfg = dataclasses.replace(base.cfg, singular_sigma=float(np.sqrt(sig[0] * sig[1])))
    ctl = CartesianImpedanceController(m, "arm_tcp", joint_names("arm"), [f"arm_torq_j{i}" for i in range(1, 8)],
                                       kp=base.kp, kr=base.kr, q_rest=base.q_rest, cfg=cfg)
    tau = ctl.compute(m, d, np.array([0.3, 0.0, 0.2]), np.array([1.0, 0, 0, 0]))
    assert ctl.status.near_singular == 1
    assert np.all(np.isfinite(tau)) and np.all(np.abs(tau) <= ctl.tau_max)


def test_joint_limit_spring_pushes_back_inside_the_range():
    import mujoco

    env = _env()
    ctl, m, d = _ctl(env), env.model, env.data
    d.qpos[ctl.qadr] = ctl.q_rest
    d.qpos[ctl.qadr[3]] = ctl.q_hi[3] - 0.01                  # joint 4 at its upper stop
    mujoco.mj_step1(m, d)
    before = ctl.status.joint_limit
    tau_near = ctl.compute(m, d, d.site_xpos[ctl.site].copy(), env.data.mocap_quat[0].copy())
    d.qpos[ctl.qadr[3]] = ctl.q_hi[3] - 0.5                   # the same, well inside
    mujoco.mj_step1(m, d)
    tau_in = ctl.compute(m, d, d.site_xpos[ctl.site].copy(), env.data.mocap_quat[0].copy())
    assert ctl.status.joint_limit == before + 1
    assert tau_near[3] - tau_in[3] < -0.5 * ctl.cfg.limit_stiffness * (ctl.cfg.limit_margin - 0.01)


def test_wrist_ft_reads_the_contact_force_tared_for_the_tool():
    env = _env()
    w0 = env.observe("arm").wrench
    assert np.all(np.abs(w0[:3]) < 0.05) and np.all(np.abs(w0[3:]) < 0.01)     # tared: the tool's weight is not read
    p, q = env.home_pose("arm")
    env.set_target("arm", [0.0, 0.0, 0.01], q)
    env.step(800)
    env.set_target("arm", [0.0, 0.0, -0.012], q)
    env.step(1500)
    s = env.observe("arm")
    f_true = env.contact_normal_force("arm")
    assert 4.0 < f_true < 20.0
    assert s.wrench[2] == pytest.approx(f_true, rel=0.05, abs=0.2)            # pressing down reads +z
    assert np.linalg.norm(s.wrench[:2]) < 0.1 * f_true


def test_wipe_expert_succeeds_on_the_arm_with_perturbations():
    env = _env(perturb=True, seed=3, wrench_noise=0.05, tactile_noise=2e-6)
    m = run_episode(env, make_expert("wipe", env.task_spec()))
    assert m["success"], {k: m[k] for k in ("coverage", "time_in_band", "peak_force", "slip_events")}
    st = env.controller_status("arm")
    assert st["torque_saturated"] == 0 and st["nonfinite"] == 0


def test_lift_expert_succeeds_on_two_arms_with_perturbations():
    env = _env(task="lift", perturb=True, seed=0, wrench_noise=0.05, tactile_noise=2e-6)
    assert env.arms == ("left", "right")
    for arm in env.arms:                              # each arm's own joints, tared at rest
        assert env.joint_state(arm)["name"][0] == f"{arm}_joint1"
        assert np.all(np.abs(env.observe(arm).wrench[:3]) < 0.5)
    m = run_episode(env, make_expert("lift", env.task_spec()))
    assert m["success"], {k: m[k] for k in ("max_lift", "hold_time", "peak_force", "slip_events")}
    for arm in env.arms:
        st = env.controller_status(arm)
        assert st["torque_saturated"] == 0 and st["nonfinite"] == 0
