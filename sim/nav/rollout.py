"""Synchronous (ROS-free) episodes: a policy answers up to 4 actions per turn from RGB-D + pose,
the env executes them at once. Used by ``slowfast nav eval`` and for data generation.

A policy has ``reset(instruction)`` and ``step(rgb, depth, intrinsics, pose_world_from_camera)
-> list of actions`` (ints or ``policy.streamvln.Action``; [] = skipped frame), the
``StreamVLNAgent`` API. Baselines here: :class:`RandomPolicy` (uniform over FORWARD / LEFT /
RIGHT, never stops) and :class:`ForwardPolicy` (always FORWARD); :class:`ExpertPolicy` is the
shortest-path expert (an upper bound).
"""
from __future__ import annotations

import time

import numpy as np

from .env import NavEnv
from .episodes import Episode
from .expert import NavExpert
from .metrics import metrics_on_layout


class RandomPolicy:
    def __init__(self, seed: int = 0, actions_per_turn: int = 4):
        self.rng = np.random.default_rng(seed)
        self.n = actions_per_turn

    def reset(self, instruction: str) -> None:
        pass

    def step(self, rgb, depth, intrinsics, pose) -> list[int]:
        return [int(a) for a in self.rng.integers(1, 4, size=self.n)]


class ForwardPolicy:
    def __init__(self, actions_per_turn: int = 4):
        self.n = actions_per_turn

    def reset(self, instruction: str) -> None:
        pass

    def step(self, rgb, depth, intrinsics, pose) -> list[int]:
        return [1] * self.n


class ExpertPolicy:
    """Needs the env (it reads the true pose and the episode's goal)."""

    def __init__(self, env: NavEnv):
        self.env = env
        self.expert = None

    def bind(self, episode: Episode) -> None:
        self.expert = NavExpert(self.env.layout, episode.goal)

    def reset(self, instruction: str) -> None:
        pass

    def step(self, rgb, depth, intrinsics, pose) -> list[int]:
        return self.expert.actions(self.env.pose, 4)


def run_episode(env: NavEnv, episode: Episode, policy, max_steps: int = 300, render: bool = True) -> dict:
    """One episode; returns the metrics plus ``actions``, ``turns``, ``path`` and latency figures."""
    env.reset(episode.layout_seed, episode.start)
    if hasattr(policy, "bind"):
        policy.bind(episode)
    policy.reset(episode.instruction)
    steps, turns, skipped = 0, 0, 0
    actions: list[int] = []
    latencies = []
    stopped = False
    while steps < max_steps and not stopped:
        if render:
            rgb, depth = env.render()
        else:
            rgb = np.zeros((env.cfg.camera_height, env.cfg.camera_width, 3), np.uint8)
            depth = np.full(rgb.shape[:2], np.nan, np.float32)
        t0 = time.perf_counter()
        out = policy.step(rgb, depth, env.intrinsics, env.camera_pose())
        latencies.append(time.perf_counter() - t0)
        turns += 1
        if not out:
            skipped += 1
            if skipped > 20:
                break
            continue
        for a in out:
            a = int(a)
            actions.append(a)
            if a == 0:
                stopped = True
                break
            env.apply_action(a)
            steps += 1
            if steps >= max_steps:
                break
    m = metrics_on_layout(env.layout, np.array(env.path), episode)
    lat = np.array(latencies) if latencies else np.array([np.nan])
    m.update({"stopped": stopped, "turns": turns, "skipped_turns": skipped, "bumps": env.bumps,
              "turn_latency_s_p50": float(np.median(lat)), "turn_latency_s_max": float(np.max(lat)),
              "actions": actions, "path": np.round(np.array(env.path), 3).tolist()})
    return m
