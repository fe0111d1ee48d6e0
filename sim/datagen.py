"""Expert demonstrations straight from the synchronous sim into a LeRobot-v3 dataset.

The ROS-free path for tests and quick experiments: no DDS, no recorder, the same dataset
contract (:mod:`slowfast_data.writer`, frames by :func:`policy.rdp.contract.frame_features`)
the recorder/converter path produces. Each frame
holds what the robot measured at that instant (TCP pose, wrist wrench, tactile field, the
scene camera) and, as the action, the target pose the expert commanded at that instant.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def generate_dataset(root: str | Path, task: str = "wipe", episodes: int = 10, seed: int = 0,
                     fps: float = 50.0, control_hz: float = 200.0, image_size: tuple[int, int] = (96, 128),
                     perturb: bool = True, episode_seconds: float | None = None, camera: bool = True,
                     progress=None, episode_runner=None, label: str = "expert",
                     only_success: bool = False, nominal: bool = False) -> Path:
    """Run ``episodes`` expert episodes (seeds ``seed``..) and write them to ``root``.

    fps: dataset frame rate (must divide ``control_hz``); image_size: (H, W) of the camera;
    camera: False writes no images (for policies that see only proprioception and touch).
    episode_runner: ``(env, on_step) -> metrics`` running one episode and calling
    ``on_step(t, states, command)`` at ``control_hz`` (default: the expert commanding the arm
    directly; the teleop app passes its own runner). ``label`` goes into each
    episode's task string. ``only_success``: write only the episodes that succeeded at their
    task. Returns the dataset folder. Raises ValueError on bad arguments, or when no episode
    was written."""
    from policy.rdp.contract import frame_features
    from slowfast_data.features import ACTION_KEY, EPISODE_SEEDS_PATH, IMAGE_PREFIX, per_arm, pose_vector
    from slowfast_data.nominal import write_nominal
    from slowfast_data.writer import DatasetWriter

    from .config import SimConfig
    from .env import SimEnv
    from .expert import make_expert
    from .runner import run_episode

    if episodes < 1:
        raise ValueError(f"episodes: {episodes} must be >= 1")
    ratio = control_hz / fps
    if fps <= 0 or abs(ratio - round(ratio)) > 1e-9:
        raise ValueError(f"fps: {fps} must divide control_hz {control_hz}")
    every = int(round(ratio))
    kw = dict(task=task, seed=seed, perturb=perturb, camera_height=image_size[0], camera_width=image_size[1],
              render=camera)
    if episode_seconds:
        kw["episode_seconds"] = episode_seconds
    env = SimEnv(SimConfig(**kw))
    n_markers = env.observe(env.arms[0]).tactile.shape[0]
    writer = DatasetWriter(root, fps=fps, arms=list(env.arms), cameras={"camera": tuple(image_size)} if camera else {},
                           tactile_markers=n_markers, robot_type=f"slowfast_sim_{task}")
    written: list[dict] = []
    nominal_eps: dict = {}
    if episode_runner is None:
        def episode_runner(env, on_step):
            return run_episode(env, make_expert(task, env.task_spec()), control_hz=control_hz, on_step=on_step)
    try:
        for ep in range(episodes):
            env.reset(seed=seed + ep)
            frames: dict[str, list] = {}
            tick = [0]

            def on_step(t, states, cmd):
                if tick[0] % every == 0:
                    arms = env.arms
                    row = frame_features(states, arms)
                    row[ACTION_KEY] = per_arm([pose_vector(*cmd[a][:2]) for a in arms])
                    if camera:
                        row[IMAGE_PREFIX + "camera"] = env.render()
                    for k, v in row.items():
                        frames.setdefault(k, []).append(v)
                tick[0] += 1

            metrics = episode_runner(env, on_step)
            times = env.perturbation_times
            if metrics.get("success") or not only_success:
                actions = np.stack(frames[ACTION_KEY])
                index = writer.add_episode({k: np.stack(v) for k, v in frames.items()}, task=f"{task} ({label})")
                written.append({"episode_index": int(index), "seed": int(seed + ep),
                                "success": bool(metrics.get("success")), "perturbation_times": times})
                if nominal and times:
                    nominal_eps[int(index)] = (np.asarray(times), nominal_actions(
                        env, seed + ep, episode_runner, every, len(actions)))
            if progress is not None:
                progress(ep, metrics)
    finally:
        env.close()
    if not writer.episodes:
        raise ValueError(f"no episode of seeds {seed}..{seed + episodes - 1} succeeded: nothing written to {root}")
    root = writer.finalize()
    if nominal:
        write_nominal(root, nominal_eps)
    # The seed of each episode, so that it can be replayed on its own scene (policy.rdp.replay).
    (root / EPISODE_SEEDS_PATH).write_text(json.dumps({"task": task, "label": label, "perturb": perturb,
                                                  "episodes": written}, indent=1))
    return root


def nominal_actions(env, seed: int, episode_runner, every: int, frames: int) -> np.ndarray:
    """The demonstrator's actions on episode ``seed`` replayed with only its first ``k``
    perturbations, for each of them: (K, frames, A*7), one row per frame as the dataset
    records them (every ``every``-th control step). The replay is the same runner on the same
    scene (the sim and the scripted demonstrator are deterministic per seed), so actions
    before perturbation ``k`` equal the recorded ones."""
    from slowfast_data.features import per_arm, pose_vector

    env.reset(seed=seed)
    n = len(env.perturbation_times)
    out = np.zeros((n, frames, len(env.arms) * 7), np.float32)
    for k in range(n):
        env.reset(seed=seed)
        env.keep_perturbations(k)
        rows, tick = [], [0]

        def on_step(t, states, cmd):
            if tick[0] % every == 0:
                rows.append(per_arm([pose_vector(*cmd[a][:2]) for a in env.arms]))
            tick[0] += 1

        episode_runner(env, on_step)
        rows = np.stack(rows)[:frames]
        out[k, :len(rows)] = rows
        out[k, len(rows):] = rows[-1]
    return out
