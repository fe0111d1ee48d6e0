"""Nominal actions of generated demonstrations: what the demonstrator would have commanded
had a perturbation not happened.

A demonstration's action chunk that spans an unforeseen perturbation holds the plan *and*
the reaction to the contact the perturbation caused. A slow policy that sees the scene before
the perturbation cannot know it is coming; what it can predict is the plan. A generated
demonstration can be replayed on its own scene (the sim is deterministic per seed) with its
perturbations cut at the k-th: the demonstrator's actions in that replay are its nominal
actions for perturbation k. Training the fast decoder to turn the latent of the nominal chunk
plus the contact it measured into the actions actually commanded makes it learn the reaction
from contact (:mod:`policy.rdp.decoder_tuning`).

Stored in the sidecar :data:`~slowfast_data.features.NOMINAL_PATH` (LeRobot readers ignore
it), per dataset episode: ``times`` (K,) the perturbations' times (s from the episode start)
and ``actions`` (K, T, A*7) float32, row ``k`` = the episode's actions (the dataset's
``action`` layout, frame for frame) replayed with perturbations ``0 .. k-1`` only.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from .features import NOMINAL_PATH


def write_nominal(root: str | Path, episodes: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Write ``{episode_index: (times (K,), actions (K, T, D))}`` to the dataset's sidecar
    (atomically: a reader never sees half a file)."""
    arrays = {}
    for e, (times, actions) in episodes.items():
        times = np.asarray(times, np.float64).reshape(-1)
        actions = np.asarray(actions, np.float32)
        if actions.ndim != 3 or actions.shape[0] != times.shape[0]:
            raise ValueError(f"nominal actions of episode {e}: shape {actions.shape} does not match "
                             f"{times.shape[0]} perturbation time(s)")
        arrays[f"{int(e)}/times"], arrays[f"{int(e)}/actions"] = times, actions
    path = Path(root) / NOMINAL_PATH
    tmp = path.with_name(path.name + ".tmp")
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    return path


def read_nominal(root: str | Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The sidecar's ``{episode_index: (times, actions)}``; empty when the dataset has none."""
    path = Path(root) / NOMINAL_PATH
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            eps = sorted({int(k.split("/")[0]) for k in z.files})
            return {e: (z[f"{e}/times"], z[f"{e}/actions"]) for e in eps}
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: not a readable nominal-action file ({exc})") from None


def chunk_source(times: np.ndarray, actions: np.ndarray, frame: int, horizon: int, fps: float) -> np.ndarray | None:
    """The nominal actions to read a chunk starting at episode frame ``frame`` from: those of
    the first perturbation after the chunk's start when it falls inside the chunk (the one the
    chunk's planner could not see coming), else None (the chunk's own actions are its plan)."""
    for k, t in enumerate(np.asarray(times, float)):
        f = t * fps
        if f > frame:
            return actions[k] if f < frame + horizon else None
    return None
