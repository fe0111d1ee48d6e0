"""Real-time factor of the simulator (for ``slowfast bench sim``). Heavy imports stay inside."""
from __future__ import annotations

import time
from typing import Dict


def physics_rtf(task: str = "wipe", seconds: float = 5.0, render: bool = False, width: int = 320,
                height: int = 240, camera_hz: float = 30.0, obs_hz: float = 200.0, seed: int = 0,
                shadows: bool = False, embodiment: str = "floating") -> Dict:
    """Step ``task`` for ``seconds`` of sim time driven by its expert, observing every arm
    (wrench + tactile) at ``obs_hz`` and, with ``render``, rendering the camera at
    ``camera_hz``. Returns ``{"rtf": sim_seconds / wall_seconds, ...}`` with a cost breakdown;
    with ``embodiment="arm"`` also the arm controllers' cost per physics step (all arms, in the
    physics time) and their saturation counters."""
    from .config import SimConfig
    from .env import SimEnv
    from .expert import make_expert

    if seconds <= 0 or obs_hz <= 0 or camera_hz <= 0:
        raise ValueError("physics_rtf: seconds, obs_hz and camera_hz must be > 0")
    cfg = SimConfig(task=task, seed=seed, perturb=True, render=bool(render), camera_width=int(width),
                    camera_height=int(height), episode_seconds=max(float(seconds), 0.1), shadows=bool(shadows),
                    embodiment=embodiment)
    env = SimEnv(cfg)
    expert = make_expert(task, env.task_spec())
    k = max(1, int(round(1.0 / (obs_hz * env.dt))))
    cam_every = 1.0 / camera_hz
    next_frame = 0.0
    frames = 0
    t_phys = t_obs = t_cam = 0.0
    if render:
        env.render()                     # create the GL context outside the timed loop
    wall0 = time.perf_counter()
    while env.time < seconds - 0.5 * env.dt:
        a = time.perf_counter()
        states = {arm: env.observe(arm) for arm in env.arms}
        for arm, (p, q) in expert.act(env.time, states).items():
            env.set_target(arm, p, q)
        b = time.perf_counter()
        if render and env.time >= next_frame - 1e-9:
            env.render()
            frames += 1
            next_frame += cam_every
        c = time.perf_counter()
        env.step(k)
        d = time.perf_counter()
        t_obs += b - a
        t_cam += c - b
        t_phys += d - c
    wall = time.perf_counter() - wall0
    sim_s = env.time
    control = _controller_cost(env) if env.embodiment == "arm" else {}
    env.close()
    return {"task": task, "embodiment": env.embodiment, **control, "rtf": sim_s / wall, "sim_seconds": sim_s, "wall_seconds": wall,
            "render": bool(render), "shadows": bool(shadows), "width": int(width), "height": int(height), "camera_hz": float(camera_hz),
            "obs_hz": float(obs_hz), "frames": frames, "physics_us_per_step": 1e6 * t_phys / max(1, round(sim_s / env.dt)),
            "observe_act_us_per_tick": 1e6 * t_obs / max(1, round(sim_s * obs_hz)),
            "render_ms_per_frame": 1e3 * t_cam / frames if frames else None}


def _controller_cost(env, calls: int = 2000) -> Dict:
    """Wall time of the arm controllers' computation per physics step (every arm, as the env runs
    them: together, measured on the final state), and their counters over the run (read first)."""
    mj = env._mj
    m, d = env.model, env.data
    status = {a: env.controller_status(a) for a in env.arms}
    mj.mj_step1(m, d)
    t0 = time.perf_counter()
    for _ in range(calls):
        env._control_arms(m, d)
    us = 1e6 * (time.perf_counter() - t0) / calls
    return {"controller_us_per_step": us, "controller_status": status}
