"""Scripted demonstrations in process through the teleop path (operator -> app JSON ->
retargeting -> safety filter -> sim): the task succeeds, the dataset has no defect (no
lunge, the command within the filter's limits, no stale frame), and it is deterministic."""
import numpy as np
import pytest

from slowfast_data.reader import LeRobotDataset
from teleop_tactar.check import check_dataset
from tests.ros.test_cli import slowfast

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("task", ["wipe", "lift"])
def test_demos_via_teleop_succeed_and_pass_the_dataset_check(tmp_path, task):
    out = tmp_path / "ds"
    r = slowfast("demos", "--task", task, "--episodes", "1", "--seed", "7", "--no-camera", "--out", str(out),
                 timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1/1 succeeded" in r.stdout
    report = check_dataset(out)
    assert report["defects"] == 0, report["episodes"]
    ep = report["episodes"][0]
    assert ep["peak_command_speed_mps"] <= report["bounds"]["max_speed_mps"] * 1.001   # the filter's limit
    ds = LeRobotDataset(out, require=["observation.tcp_pose", "action", "observation.wrench"])
    assert ds.episodes["tasks"].iloc[0][0] == f"{task} (scripted teleop)"


def test_the_same_seed_gives_the_same_demonstration(tmp_path):
    from sim.datagen import generate_dataset
    from slowfast_app.cli.demos import safety_node_limits
    from teleop_tactar.demonstrator import TeleopEpisodeRunner

    runs = []
    for k in range(2):
        root = generate_dataset(tmp_path / f"d{k}", task="wipe", episodes=1, seed=3, camera=False,
                                episode_seconds=2.0, episode_runner=TeleopEpisodeRunner(safety_node_limits()))
        runs.append(LeRobotDataset(root).data["action"])
    np.testing.assert_array_equal(runs[0], runs[1])


def test_only_successful_episodes_are_written_when_asked(tmp_path):
    from sim.datagen import generate_dataset

    calls = []

    def runner(env, on_step):                 # 0.1 s of holding still; every other episode "fails"
        for _ in range(20):
            states = {a: env.observe(a) for a in env.arms}
            on_step(env.time, states, {a: (s.tcp_pos, s.tcp_quat) for a, s in states.items()})
            env.step(5)
        calls.append(env.time)
        return {"success": len(calls) % 2 == 1}

    root = generate_dataset(tmp_path / "d", episodes=4, camera=False, episode_runner=runner, only_success=True)
    assert len(calls) == 4 and LeRobotDataset(root).ep_ids == [0, 1]      # 2 of 4 kept
    with pytest.raises(ValueError, match="no episode"):
        generate_dataset(tmp_path / "e", episodes=1, camera=False, only_success=True,
                         episode_runner=lambda env, on_step: (runner(env, on_step), {"success": False})[1])


def test_workers_write_the_same_dataset_in_seed_order(tmp_path):
    """`slowfast demos --workers 2`: each process has its own sim; the dataset (frames,
    nominal actions, seeds) is the one a single process writes."""
    import json

    from sim.datagen import generate_dataset
    from slowfast_app.cli.demos import safety_node_limits
    from slowfast_data.features import EPISODE_SEEDS_PATH
    from slowfast_data.nominal import read_nominal
    from teleop_tactar.demonstrator import TeleopEpisodeRunner

    # 4 s episodes (the task's are 8): each still has its surface perturbations, so nominal actions
    roots = [generate_dataset(tmp_path / f"w{w}", task="wipe", episodes=3, seed=11, fps=25.0, camera=False,
                              nominal=True, workers=w, episode_seconds=4.0,
                              episode_runner=TeleopEpisodeRunner(safety_node_limits()))
             for w in (1, 2)]
    one, two = (LeRobotDataset(r) for r in roots)
    assert one.ep_ids == two.ep_ids == [0, 1, 2]
    for key in ("action", "observation.tcp_pose", "observation.wrench"):
        np.testing.assert_array_equal(one.data[key], two.data[key])
    np.testing.assert_array_equal(one.episode_index, two.episode_index)
    seeds = [json.loads((r / EPISODE_SEEDS_PATH).read_text())["episodes"] for r in roots]
    assert seeds[0] == seeds[1] and [e["seed"] for e in seeds[0]] == [11, 12, 13]
    nominal = [read_nominal(r) for r in roots]
    assert nominal[0].keys() == nominal[1].keys() and nominal[0]      # perturbed episodes have their nominal actions
    for k in nominal[0]:
        for a, b in zip(nominal[0][k], nominal[1][k]):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="picklable"):
        generate_dataset(tmp_path / "c", episodes=2, camera=False, workers=2, episode_runner=lambda env, on_step: {})
