"""Expert navigation episodes for training, generated in the MuJoCo navigation sim.

``generate_episodes(folder, seeds)`` drives the shortest-path expert (``sim.nav``) turn by turn:
at each turn it renders the RGB-D frame, asks the expert for the next 4 actions (the label) and
executes them. With probability ``perturb`` a turn first executes one random action (which is
not a label), so the data also shows how to recover from being off the path (DAgger-lite).

Storage: one ``episode_XXXXXX.npz`` per episode (no pickles): ``rgb`` uint8 [T, H, W, 3],
``depth`` float16 [T, H, W] (m, NaN = none), ``intrinsics`` [3, 3], ``poses`` [T, 4, 4]
(camera optical frame in the world), ``actions`` int8 [T, 4] (-1 = padding; STOP = 0 ends),
``instruction`` (str). ``meta.json`` lists the episodes and the camera.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def generate_episodes(folder, seeds, width: int = 160, height: int = 120, perturb: float = 0.15,
                      max_turns: int = 120, progress=None) -> dict:
    from sim.nav import NavConfig, NavEnv, NavExpert, make_episode

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    env = NavEnv(NavConfig(camera_width=width, camera_height=height))
    names = []
    frames = 0
    for i, seed in enumerate(seeds):
        ep = make_episode(int(seed))
        env.reset(ep.layout_seed, ep.start)
        expert = NavExpert(env.layout, ep.goal)
        rng = np.random.default_rng([int(seed), 11])
        rgbs, depths, poses, acts = [], [], [], []
        for _ in range(max_turns):
            if rng.random() < perturb and len(acts) > 0:
                env.apply_action(int(rng.integers(1, 4)))
            rgb, depth = env.render()
            a = expert.actions(env.pose, 4)
            rgbs.append(rgb)
            depths.append(depth.astype(np.float16))
            poses.append(env.camera_pose())
            acts.append(a + [-1] * (4 - len(a)))
            if 0 in a:
                break
            for x in a:
                env.apply_action(x)
        name = f"episode_{int(seed):06d}.npz"
        np.savez_compressed(folder / name, rgb=np.stack(rgbs), depth=np.stack(depths), intrinsics=env.intrinsics,
                            poses=np.stack(poses), actions=np.array(acts, np.int8), instruction=ep.instruction)
        names.append(name)
        frames += len(rgbs)
        if progress is not None:
            progress(i + 1, len(seeds), frames)
    env.close()
    meta = {"episodes": names, "frames": frames, "width": width, "height": height, "seeds": [int(s) for s in seeds]}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def load_episodes(folder) -> list[dict]:
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: no meta.json (generate the data with `slowfast train vln --data-dir`)")
    meta = json.loads(meta_path.read_text())
    out = []
    for name in meta["episodes"]:
        with np.load(folder / name) as z:
            out.append({"rgb": z["rgb"], "actions": z["actions"], "instruction": str(z["instruction"])})
    return out
