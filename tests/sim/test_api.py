"""SimConfig validation, set_target checks, observation shapes, seeded perturbations."""
from __future__ import annotations

import numpy as np
import pytest

from sim import TASKS, ArmState, SimConfig, SimEnv


def test_tasks():
    assert TASKS == ("wipe", "lift")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"task": "foo"}, "SimConfig.task"),
        ({"seed": -1}, "SimConfig.seed"),
        ({"camera_width": 0}, "SimConfig.camera_width"),
        ({"camera_height": 10_000}, "SimConfig.camera_height"),
        ({"force_band": (15.0, 5.0)}, "SimConfig.force_band"),
        ({"force_band": (float("nan"), 5.0)}, "SimConfig.force_band"),
        ({"episode_seconds": -1.0}, "SimConfig.episode_seconds"),
        ({"timestep": 0.1}, "SimConfig.timestep"),
        ({"perturb": "yes"}, "SimConfig.perturb"),
        ({"squeeze_limit": 0.0}, "SimConfig.squeeze_limit"),
        ({"tactile_rows": 1}, "SimConfig.tactile_rows"),
    ],
)
def test_config_rejects_bad_fields(kwargs, field):
    with pytest.raises(ValueError) as err:
        SimConfig(**kwargs)
    assert field in str(err.value)


def test_config_error_lists_choices():
    with pytest.raises(ValueError, match=r"SimConfig.task: unknown task 'foo' \(choose from wipe, lift\)"):
        SimConfig(task="foo")


def test_config_task_defaults():
    assert SimConfig(task="wipe").force_band == (5.0, 15.0)
    assert SimConfig(task="wipe").episode_seconds == 8.0
    assert SimConfig(task="lift").episode_seconds == 6.0
    assert SimConfig(task="wipe", force_band=(4, 12)).force_band == (4.0, 12.0)


@pytest.fixture(scope="module")
def wipe_env():
    return SimEnv(SimConfig(task="wipe", seed=0, perturb=False, render=False))


def test_env_surface(wipe_env):
    env = wipe_env
    assert env.arms == ("arm",)
    assert env.cameras == ("camera",)
    assert env.dt == pytest.approx(0.001)
    lift = SimEnv(SimConfig(task="lift", seed=0, render=False))
    assert lift.arms == ("left", "right")
    env.reset(seed=1)
    assert env.time == 0.0
    env.step(10)
    assert env.time == pytest.approx(0.010)
    s = env.observe("arm")
    assert isinstance(s, ArmState)
    assert s.stamp == pytest.approx(0.010)
    assert s.tcp_pos.shape == (3,) and s.tcp_quat.shape == (4,)
    assert np.linalg.norm(s.tcp_quat) == pytest.approx(1.0)
    assert s.tcp_linvel.shape == (3,) and s.tcp_angvel.shape == (3,)
    assert s.wrench.shape == (6,)
    assert s.tactile.shape == (63, 4) and s.tactile.dtype == np.float32
    assert s.gripper is None
    pos, quat = env.home_pose("arm")
    assert np.allclose(quat, [0, 0, 0, 1])
    lo, hi = env.workspace("arm")
    assert np.all(lo < pos) and np.all(pos < hi)


def test_set_target_validation(wipe_env):
    env = wipe_env
    env.reset(seed=0)
    pos, quat = env.home_pose("arm")
    env.set_target("arm", pos, quat)
    before = env.data.mocap_pos.copy(), env.data.mocap_quat.copy()
    bad = [
        ([np.nan, 0, 0.05], quat),
        ([0, 0, np.inf], quat),
        (pos, [0, 0, 0, 2.0]),
        (pos, [0, 0, 0, 1.01]),
        (pos, [0, 0, np.nan, 1.0]),
        ([5.0, 0, 0.05], quat),
        ([0.0, 0.0, -1.0], quat),
        ([0, 0], quat),
    ]
    for p, q in bad:
        with pytest.raises(ValueError):
            env.set_target("arm", p, q)
        assert np.array_equal(env.data.mocap_pos, before[0])   # never applied
        assert np.array_equal(env.data.mocap_quat, before[1])
    with pytest.raises(ValueError, match="unknown arm"):
        env.set_target("left", pos, quat)
    # within 1e-3 of unit norm: accepted and normalised
    env.set_target("arm", pos, [0, 0, 0, 1.0005])
    assert np.linalg.norm(env.data.mocap_quat[env._ids["arm"]["mocap"]]) == pytest.approx(1.0)


@pytest.mark.parametrize("task", TASKS)
def test_perturbations_seeded(task):
    a = SimEnv(SimConfig(task=task, seed=3, perturb=True, render=False))
    b = SimEnv(SimConfig(task=task, seed=3, perturb=True, render=False))
    c = SimEnv(SimConfig(task=task, seed=4, perturb=True, render=False))
    assert a.perturbation_times and a.perturbation_times == b.perturbation_times
    assert a.perturbation_times != c.perturbation_times
    assert all(0.0 < t < a.episode_seconds for t in a.perturbation_times)
    # reset(seed) reproduces the episode; reset() moves on to the next seed
    first = list(a.perturbation_times)
    a.reset()
    assert a.seed == 4 and a.perturbation_times == c.perturbation_times
    a.reset(seed=3)
    assert a.perturbation_times == first
    off = SimEnv(SimConfig(task=task, seed=3, perturb=False, render=False))
    assert off.perturbation_times == []


def test_same_seed_same_observations():
    envs = [SimEnv(SimConfig(task="wipe", seed=7, render=False)) for _ in range(2)]
    for env in envs:
        pos, quat = env.home_pose("arm")
        env.set_target("arm", [pos[0], pos[1], -0.01], quat)
        env.step(300)
    s0, s1 = (e.observe("arm") for e in envs)
    assert np.array_equal(s0.wrench, s1.wrench)
    assert np.array_equal(s0.tactile, s1.tactile)
