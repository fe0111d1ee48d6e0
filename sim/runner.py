"""Synchronous, ROS-free episode runner for tests and data generation."""
from __future__ import annotations

from typing import Callable, Dict, Optional


def run_episode(env, controller, control_hz: float = 200.0, record_video: Optional[Callable] = None,
                video_hz: float = 30.0, on_step: Optional[Callable] = None) -> Dict:
    """Run ``controller`` on ``env`` from its current state until ``env.done``; return ``env.metrics()``.

    Call ``env.reset(seed)`` first for a new episode (a new ``SimEnv`` is already reset with its
    config seed). The controller (an expert or any object with ``act(t, states)``, or a plain
    callable ``(t, states) -> {arm: (pos, quat_xyzw)}``) is called every ``1/control_hz`` s of
    sim time with ``{arm: ArmState}``; physics runs at 1 kHz in between. ``record_video``, when
    given, receives ``env.render()`` frames at ``video_hz`` (sim time). ``on_step(t, states,
    command)`` is called after each control tick (for recording demonstrations).
    """
    if not 1.0 <= float(control_hz) <= 1.0 / env.dt:
        raise ValueError(f"run_episode: control_hz {control_hz!r} is not in [1, {1.0 / env.dt:g}] Hz")
    act = controller.act if hasattr(controller, "act") else controller
    if hasattr(controller, "reset"):
        controller.reset()
    k = max(1, int(round(1.0 / (float(control_hz) * env.dt))))
    next_frame = env.time
    while not env.done:
        states = {arm: env.observe(arm) for arm in env.arms}
        cmd = act(env.time, states)
        for arm, (pos, quat) in cmd.items():
            env.set_target(arm, pos, quat)
        if on_step is not None:
            on_step(env.time, states, cmd)
        if record_video is not None and env.time >= next_frame - 1e-9:
            record_video(env.render())
            next_frame += 1.0 / video_hz
        env.step(k)
    return env.metrics()
