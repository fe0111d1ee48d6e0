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


class ExpertRunner:
    """The default ``episode_runner``: the task's expert commands the arm directly at
    ``control_hz``. A class, not a closure, so that worker processes can take it."""

    def __init__(self, task: str, control_hz: float):
        self.task, self.control_hz = task, control_hz

    def __call__(self, env, on_step) -> dict:
        from .expert import make_expert
        from .runner import run_episode

        return run_episode(env, make_expert(self.task, env.task_spec()), control_hz=self.control_hz, on_step=on_step)


def generate_dataset(root: str | Path, task: str = "wipe", episodes: int = 10, seed: int = 0,
                     fps: float = 50.0, control_hz: float = 200.0, image_size: tuple[int, int] = (96, 128),
                     perturb: bool = True, episode_seconds: float | None = None, camera: bool = True,
                     progress=None, episode_runner=None, label: str = "expert",
                     only_success: bool = False, nominal: bool = False, workers: int = 1,
                     embodiment: str = "floating") -> Path:
    """Run ``episodes`` expert episodes (seeds ``seed``..) and write them to ``root``.

    fps: dataset frame rate (must divide ``control_hz``); image_size: (H, W) of the camera;
    camera: False writes no images (for policies that see only proprioception and touch).
    episode_runner: ``(env, on_step) -> metrics`` running one episode and calling
    ``on_step(t, states, command)`` at ``control_hz`` (default: :class:`ExpertRunner`, the
    expert commanding the arm directly; the teleop app passes its own runner). ``label`` goes
    into each episode's task string. ``only_success``: write only the episodes that succeeded
    at their task. ``workers``: episodes run in this many processes (each with its own sim;
    the runner must then be picklable) and are written in seed order, so the dataset is the
    same whatever the count. ``embodiment``: the robot (:data:`sim.config.EMBODIMENTS`).
    Returns the dataset folder. Raises ValueError on bad arguments,
    or when no episode was written."""
    from slowfast_data.features import EPISODE_SEEDS_PATH
    from slowfast_data.nominal import write_nominal
    from slowfast_data.writer import DatasetWriter

    from .parallel import in_seed_order

    if episodes < 1:
        raise ValueError(f"episodes: {episodes} must be >= 1")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: {workers!r} must be an integer >= 1")
    ratio = control_hz / fps
    if fps <= 0 or abs(ratio - round(ratio)) > 1e-9:
        raise ValueError(f"fps: {fps} must divide control_hz {control_hz}")
    kw = dict(task=task, embodiment=embodiment, seed=seed, perturb=perturb, camera_height=image_size[0],
              camera_width=image_size[1], render=camera)
    if episode_seconds:
        kw["episode_seconds"] = episode_seconds
    spec = {"sim": kw, "runner": episode_runner or ExpertRunner(task, control_hz), "every": int(round(ratio)),
            "camera": camera, "nominal": nominal, "only_success": only_success}
    if workers > 1:
        import pickle

        try:
            pickle.dumps(spec["runner"])
        except Exception:  # noqa: BLE001 - any pickling failure means the same
            raise ValueError("workers > 1 needs a picklable episode_runner (a class instance, not a closure)") from None
    seeds = [seed + ep for ep in range(episodes)]
    written: list[dict] = []
    nominal_eps: dict = {}
    writer = None
    for ep, rec in enumerate(in_seed_order(_init_worker, _worker_episode, _close_worker, spec, seeds, workers)):
        if writer is None:
            writer = DatasetWriter(root, fps=fps, arms=rec["arms"],
                                   cameras={"camera": tuple(image_size)} if camera else {},
                                   tactile_markers=rec["markers"], robot_type=f"slowfast_sim_{task}")
        metrics, times = rec["metrics"], rec["perturbation_times"]
        if metrics.get("success") or not only_success:
            index = writer.add_episode(rec["frames"], task=f"{task} ({label})")
            written.append({"episode_index": int(index), "seed": int(seeds[ep]),
                            "success": bool(metrics.get("success")), "perturbation_times": times})
            if rec["nominal"] is not None:
                nominal_eps[int(index)] = (np.asarray(times), rec["nominal"])
        if progress is not None:
            progress(ep, metrics)
    if writer is None or not writer.episodes:
        raise ValueError(f"no episode of seeds {seed}..{seed + episodes - 1} succeeded: nothing written to {root}")
    root = writer.finalize()
    if nominal:
        write_nominal(root, nominal_eps)
    # The seed of each episode, so that it can be replayed on its own scene (policy.rdp.replay).
    (root / EPISODE_SEEDS_PATH).write_text(json.dumps({"task": task, "label": label, "perturb": perturb,
                                                  "episodes": written}, indent=1))
    return root


_WORKER: dict = {}


def _init_worker(spec: dict) -> None:
    from .config import SimConfig
    from .env import SimEnv

    _WORKER.update(spec=spec, env=SimEnv(SimConfig(**spec["sim"])))


def _close_worker() -> None:
    env = _WORKER.pop("env", None)
    if env is not None:
        env.close()


def _worker_episode(seed: int) -> dict:
    return record_episode(_WORKER["env"], seed, **{k: _WORKER["spec"][k] for k in ("runner", "every", "camera",
                                                                                       "nominal", "only_success")})


def record_episode(env, seed: int, runner, every: int, camera: bool, nominal: bool,
                   only_success: bool = False) -> dict:
    """One episode of ``runner`` on ``env`` reset to ``seed``, as dataset frames (every
    ``every``-th control step: what the robot measured and, as the action, what was
    commanded), with its metrics, perturbation times and, with ``nominal``, for a perturbed
    episode that will be written (a success, or any with ``only_success`` off), the nominal
    actions (:func:`nominal_actions`)."""
    from policy.rdp.contract import frame_features
    from slowfast_data.features import ACTION_KEY, IMAGE_PREFIX, per_arm, pose_vector

    env.reset(seed=seed)
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

    metrics = runner(env, on_step)
    times = list(env.perturbation_times)
    frames = {k: np.stack(v) for k, v in frames.items()}
    rec = {"frames": frames, "metrics": metrics, "perturbation_times": times, "nominal": None,
           "arms": list(env.arms), "markers": int(env.observe(env.arms[0]).tactile.shape[0])}
    if nominal and times and (metrics.get("success") or not only_success):
        rec["nominal"] = nominal_actions(env, seed, runner, every, len(frames[ACTION_KEY]))
    return rec


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
