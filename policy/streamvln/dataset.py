"""Expert navigation episodes for training, generated in the MuJoCo navigation sim.

``generate_episodes(folder, seeds)`` drives the shortest-path expert (``sim.nav``) turn by turn:
at each turn it renders the RGB-D frame, asks the expert for the next 4 actions (the label) and
executes them. With probability ``perturb`` a turn first executes one random action (which is
not a label), so the data also shows how to recover from being off the path (DAgger-lite).

``collect_on_policy(folder, seeds, agent)`` is DAgger: a trained agent drives, the expert labels
every turn from wherever the agent went, so the data covers the states the agent's own mistakes
lead to (behaviour cloning alone never shows them; the small model then drifts off the path and
cannot come back).

Storage: one ``episode_XXXXXX.npz`` per episode (no pickles): ``rgb`` uint8 [T, H, W, 3],
``depth`` float16 [T, H, W] (m, NaN = none), ``intrinsics`` [3, 3], ``poses`` [T, 4, 4]
(camera optical frame in the world), ``actions`` int8 [T, 4] (the expert's label; -1 = padding;
STOP = 0 ends), ``instruction`` (str); on-policy episodes (``dagger_XXXXXX.npz``) add
``executed`` int8 [T, 4], what was executed (the agent's answer), which the training context
shows. ``meta.json`` lists the episodes and the camera.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _pad4(actions) -> list[int]:
    a = [int(x) for x in actions][:4]
    return a + [-1] * (4 - len(a))


class _EpisodeBuffer:
    """One episode's turns as stored (module docstring): frame, depth, camera pose, the expert's
    label and, for on-policy episodes, what was executed."""

    def __init__(self):
        self.rgb, self.depth, self.poses, self.actions, self.executed = [], [], [], [], []

    def add(self, env, rgb, depth, label, executed=None) -> None:
        self.rgb.append(rgb)
        self.depth.append(depth.astype(np.float16))
        self.poses.append(env.camera_pose())
        self.actions.append(_pad4(label))
        if executed is not None:
            self.executed.append(_pad4(executed))

    def save(self, path: Path, intrinsics, instruction: str) -> int:
        """Write the episode's npz; returns its number of frames."""
        extra = {"executed": np.array(self.executed, np.int8)} if self.executed else {}
        np.savez_compressed(path, rgb=np.stack(self.rgb), depth=np.stack(self.depth), intrinsics=intrinsics,
                            poses=np.stack(self.poses), actions=np.array(self.actions, np.int8),
                            instruction=instruction, **extra)
        return len(self.rgb)


def _camera_config(width: int | None, height: int | None):
    """The nav sim's config at ``width`` x ``height`` (None: its default camera, the size the
    models are trained and evaluated at)."""
    from sim.nav import NavConfig

    d = NavConfig()
    return NavConfig(camera_width=width or d.camera_width, camera_height=height or d.camera_height)


def generate_episodes(folder, seeds, width: int | None = None, height: int | None = None, perturb: float = 0.15,
                      max_turns: int = 120, progress=None) -> dict:
    from sim.nav import NavEnv, NavExpert, make_episode

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    env = NavEnv(_camera_config(width, height))
    width, height = env.cfg.camera_width, env.cfg.camera_height
    names = []
    frames = 0
    for i, seed in enumerate(seeds):
        ep = make_episode(int(seed))
        env.reset(ep.layout_seed, ep.start)
        expert = NavExpert(env.layout, ep.goal)
        rng = np.random.default_rng([int(seed), 11])
        buf = _EpisodeBuffer()
        for _ in range(max_turns):
            if rng.random() < perturb and buf.actions:
                env.apply_action(int(rng.integers(1, 4)))
            rgb, depth = env.render()
            a = expert.actions(env.pose, 4)
            buf.add(env, rgb, depth, a)
            if 0 in a:
                break
            for x in a:
                env.apply_action(x)
        name = f"episode_{int(seed):06d}.npz"
        n_frames = buf.save(folder / name, env.intrinsics, ep.instruction)
        names.append(name)
        frames += n_frames
        if progress is not None:
            progress(i + 1, len(seeds), frames)
    env.close()
    meta = {"episodes": names, "frames": frames, "width": width, "height": height, "seeds": [int(s) for s in seeds]}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def _append_meta(folder: Path, names: list[str], frames: int, width: int, height: int, seeds) -> dict:
    path = folder / "meta.json"
    meta = json.loads(path.read_text()) if path.is_file() else {"episodes": [], "frames": 0, "width": width,
                                                                "height": height, "seeds": []}
    if (meta["width"], meta["height"]) != (width, height):
        raise ValueError(f"{folder}: holds {meta['width']}x{meta['height']} frames, not {width}x{height}")
    meta["episodes"] += names
    meta["frames"] += frames
    meta["seeds"] += [int(s) for s in seeds]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(path)  # the listing is never half written
    return meta


def collect_on_policy(folder, seeds, agent, width: int | None = None, height: int | None = None, max_turns: int = 75,
                      progress=None) -> dict:
    """DAgger rollouts: ``agent`` (the ``StreamVLNAgent`` API) drives; every turn is labelled with
    the expert's next 4 actions from the pose the agent reached. A STOP of the agent away from the
    goal is not executed (the expert's actions are, and recorded as executed); the episode ends
    when the expert says STOP (the goal is reached) or after ``max_turns``. Appends
    ``dagger_XXXXXX.npz`` files to ``folder`` and their names to its ``meta.json``."""
    from sim.nav import NavEnv, NavExpert, make_episode

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    env = NavEnv(_camera_config(width, height))
    width, height = env.cfg.camera_width, env.cfg.camera_height
    names, frames, done, meta = [], 0, [], None
    try:
        for i, seed in enumerate(seeds):
            ep = make_episode(int(seed))
            env.reset(ep.layout_seed, ep.start)
            expert = NavExpert(env.layout, ep.goal)
            agent.reset(ep.instruction)
            buf = _EpisodeBuffer()
            for _ in range(max_turns):
                rgb, depth = env.render()
                label = expert.actions(env.pose, 4)
                answer = [int(a) for a in agent.step(rgb, depth, env.intrinsics, env.camera_pose())]
                if 0 in label:
                    run = label
                elif not answer or 0 in answer:
                    run = label            # a skipped frame or a STOP short of the goal
                else:
                    run = answer
                buf.add(env, rgb, depth, label, executed=run)
                if 0 in label:
                    break
                for a in run:
                    env.apply_action(a)
            name = f"dagger_{int(seed):06d}.npz"
            n_frames = buf.save(folder / name, env.intrinsics, ep.instruction)
            names.append(name)
            done.append(int(seed))
            frames += n_frames
            if progress is not None:
                progress(i + 1, len(seeds), frames)
    finally:
        env.close()
        if names:  # what was collected stays usable after an interruption
            meta = _append_meta(folder, names, frames, width, height, done)
    return meta


def next_seed(meta: dict) -> int:
    """The first layout seed after every episode a dataset's ``meta.json`` lists (new layouts for DAgger)."""
    return max(meta.get("seeds") or [-1]) + 1


def load_episodes(folder) -> list[dict]:
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: no meta.json (generate the data with `slowfast train vln --data-dir`)")
    meta = json.loads(meta_path.read_text())
    out = []
    for name in meta["episodes"]:
        with np.load(folder / name) as z:
            ep = {"rgb": z["rgb"], "actions": z["actions"], "instruction": str(z["instruction"])}
            if "executed" in z.files:
                ep["executed"] = z["executed"]
            out.append(ep)
    return out
