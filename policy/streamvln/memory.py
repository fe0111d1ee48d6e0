"""Slow memory with 3-D aware pruning (the StreamVLN paper's method; not in the published code).

1. Every pooled patch token of a frame is back-projected: its depth is the median of the valid
   depth samples in the token's image cell, its pixel is the cell centre, and the intrinsics and
   ``pose_world_from_camera`` take it to world coordinates. Tokens whose cell has too few valid
   depth samples (NaN, <= 0, out of [min_depth, max_depth]) are invalid and never kept.
2. Frames are grouped into temporal blocks of K frames (by turn index). Within a block each world
   voxel keeps only its latest token (newest frame wins).
3. A frame left with fewer than a fraction theta of its tokens is dropped.
4. The memory handed to the model is capped at M tokens: the fewest frames, spread uniformly
   over time, that hold M tokens; the excess is trimmed from the oldest of them.

Conventions: depth in metres aligned with the RGB image; intrinsics 3x3 in that image's pixels
(pixel centres at integer coordinates, OpenCV); the camera frame is OpenCV optical (x right,
y down, z forward); ``pose_world_from_camera`` is a 4x4 rigid transform into a fixed world frame.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .config import MemoryConfig


# ---- validation ---------------------------------------------------------------------------
def validate_pose(pose, tol: float = 1e-3) -> np.ndarray:
    """A 4x4 rigid transform with an orthonormal, right-handed rotation; ValueError otherwise."""
    T = np.asarray(pose, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"pose_world_from_camera must be 4x4, got shape {T.shape}")
    if not np.isfinite(T).all():
        raise ValueError("pose_world_from_camera has non-finite entries")
    if np.abs(T[3] - np.array([0.0, 0.0, 0.0, 1.0])).max() > 1e-6:
        raise ValueError(f"pose_world_from_camera last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    err = np.abs(R.T @ R - np.eye(3)).max()
    if err > tol:
        raise ValueError(f"pose_world_from_camera rotation is not orthonormal (|R^T R - I| = {err:.2e} > {tol})")
    if np.linalg.det(R) <= 0:
        raise ValueError("pose_world_from_camera rotation is a reflection (det < 0)")
    return T


def validate_intrinsics(K) -> np.ndarray:
    """A 3x3 pinhole matrix with positive focal lengths and last row [0, 0, 1]; ValueError otherwise."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"intrinsics must be 3x3, got shape {K.shape}")
    if not np.isfinite(K).all():
        raise ValueError("intrinsics has non-finite entries")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"intrinsics focal lengths must be > 0, got fx={K[0, 0]}, fy={K[1, 1]}")
    if np.abs(K[2] - np.array([0.0, 0.0, 1.0])).max() > 1e-9 or K[1, 0] != 0:
        raise ValueError(f"intrinsics must be upper triangular with last row [0, 0, 1], got {K.tolist()}")
    return K


# ---- back-projection ----------------------------------------------------------------------
@dataclass
class FrameGeometry:
    points: np.ndarray  # [T, 3] world coordinates of each token (NaN where invalid)
    valid: np.ndarray  # [T] bool: depth good enough to place the token


def token_depths(depth: np.ndarray, side: int, cfg: MemoryConfig) -> tuple[np.ndarray, np.ndarray]:
    """Median valid depth per token cell of a ``side x side`` grid, and the validity mask."""
    h, w = depth.shape
    s = cfg.depth_samples_per_token
    n = side * s
    rows = np.minimum(((np.arange(n) + 0.5) * h / n).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(n) + 0.5) * w / n).astype(np.int64), w - 1)
    samples = np.asarray(depth, dtype=np.float64)[rows][:, cols]  # [n, n]
    samples = samples.reshape(side, s, side, s).transpose(0, 2, 1, 3).reshape(side * side, s * s)
    good = np.isfinite(samples) & (samples >= cfg.min_depth) & (samples <= cfg.max_depth)
    frac = good.mean(axis=1)
    masked = np.where(good, samples, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells: handled by `valid`
        med = np.nanmedian(masked, axis=1)
    valid = (frac >= cfg.min_valid_depth_fraction) & np.isfinite(med)
    return np.where(valid, med, np.nan), valid


def backproject_tokens(depth: np.ndarray, intrinsics, pose_world_from_camera, side: int,
                       cfg: MemoryConfig) -> FrameGeometry:
    """World position of each pooled token (raster order over a ``side x side`` grid)."""
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be [H, W], got shape {depth.shape}")
    K = validate_intrinsics(intrinsics)
    T = validate_pose(pose_world_from_camera)
    h, w = depth.shape
    z, valid = token_depths(depth, side, cfg)
    jj, ii = np.meshgrid(np.arange(side), np.arange(side))
    u = (jj.reshape(-1) + 0.5) * w / side - 0.5
    v = (ii.reshape(-1) + 0.5) * h / side - 0.5
    y = (v - K[1, 2]) / K[1, 1]
    x = (u - K[0, 2] - K[0, 1] * y) / K[0, 0]
    cam = np.stack([x * z, y * z, z], axis=1)
    world = cam @ T[:3, :3].T + T[:3, 3]
    world[~valid] = np.nan
    return FrameGeometry(points=world, valid=valid)


# ---- pruning ------------------------------------------------------------------------------
def voxel_keys(points: np.ndarray, voxel_size: float) -> np.ndarray:
    return np.floor(points / voxel_size).astype(np.int64)


def prune_block(points_per_frame: list[np.ndarray], voxel_size: float, min_keep_fraction: float,
                tokens_per_frame: list[int]) -> list[np.ndarray]:
    """One temporal block, frames in time order (oldest first). Returns a keep mask per frame.

    ``points_per_frame[f]`` holds the world points of frame f's valid tokens. Within the block
    each voxel keeps only the token of the latest frame that sees it (several tokens of that one
    frame in the same voxel: the first in raster order). A frame keeping fewer than
    ``min_keep_fraction * tokens_per_frame[f]`` tokens is dropped (all-False mask).
    """
    masks = [np.zeros(len(p), dtype=bool) for p in points_per_frame]
    if not points_per_frame or sum(len(p) for p in points_per_frame) == 0:
        return masks
    # Newest frame first, so the first occurrence of a voxel is its latest token.
    order = list(range(len(points_per_frame)))[::-1]
    keys = np.concatenate([voxel_keys(points_per_frame[f], voxel_size) for f in order], axis=0)
    owner = np.concatenate([np.full(len(points_per_frame[f]), f) for f in order])
    local = np.concatenate([np.arange(len(points_per_frame[f])) for f in order])
    _, first = np.unique(keys, axis=0, return_index=True)
    for idx in first:
        masks[owner[idx]][local[idx]] = True
    for f, m in enumerate(masks):
        if m.sum() < min_keep_fraction * tokens_per_frame[f]:
            m[:] = False
    return masks


@dataclass
class MemoryFrame:
    turn: int
    features: torch.Tensor  # [n, D] tokens still held
    points: np.ndarray  # [n, 3]
    token_index: np.ndarray  # [n] index in the frame's token grid
    tokens_per_frame: int
    final: bool = False  # its block is complete and pruned for good

    @property
    def num_tokens(self) -> int:
        return int(self.token_index.shape[0])


@dataclass
class MemoryStats:
    frames_added: int = 0
    tokens_seen: int = 0  # all tokens of added frames
    invalid_depth_tokens: int = 0  # never kept
    frames_without_depth: int = 0  # no valid token at all: not placed in memory
    blocks_pruned: int = 0
    pruned_valid_tokens: int = 0  # valid tokens of frames in finished blocks
    pruned_kept_tokens: int = 0  # of those, kept after voxel pruning and frame dropping
    frames_dropped: int = 0  # by the theta rule
    frames_thinned: int = 0  # removed to respect max_pool_frames
    last_memory_tokens: int = 0
    last_memory_frames: int = 0
    last_candidate_tokens: int = 0  # before the cap M, after pruning

    @property
    def pruning_ratio(self) -> float:
        """Fraction of valid tokens removed by 3-D pruning over finished blocks."""
        if self.pruned_valid_tokens == 0:
            return 0.0
        return 1.0 - self.pruned_kept_tokens / self.pruned_valid_tokens


class SpatialMemory:
    """Pool of past frames' tokens, pruned per temporal block, sampled into the memory."""

    def __init__(self, cfg: MemoryConfig):
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self.frames: list[MemoryFrame] = []
        self.stats = MemoryStats()

    def _block(self, turn: int) -> int:
        return turn // self.cfg.block_frames

    def add(self, turn: int, features: torch.Tensor, geometry: FrameGeometry) -> None:
        """Add a frame's tokens ``[T, D]`` (turn indices must increase)."""
        if self.frames and turn <= self.frames[-1].turn:
            raise ValueError(f"turn must increase: {turn} after {self.frames[-1].turn}")
        T = features.shape[0]
        if geometry.valid.shape != (T,):
            raise ValueError(f"geometry for {geometry.valid.shape} tokens, features for {T}")
        st = self.stats
        st.frames_added += 1
        st.tokens_seen += T
        st.invalid_depth_tokens += int(T - geometry.valid.sum())
        idx = np.flatnonzero(geometry.valid)
        # Finish the blocks before this frame's block: their pruning can no longer change.
        self._finalize(before_block=self._block(turn))
        if idx.size == 0:
            st.frames_without_depth += 1
            return
        self.frames.append(MemoryFrame(turn=turn, features=features[torch.as_tensor(idx, device=features.device)],
                                       points=geometry.points[idx], token_index=idx, tokens_per_frame=T))
        self._thin()

    def _prune_groups(self, frames: list[MemoryFrame]) -> dict[int, np.ndarray]:
        """Keep masks for ``frames`` (pruned block by block). Identity when pruning is off."""
        out: dict[int, np.ndarray] = {}
        if not self.cfg.prune:
            return {f.turn: np.ones(f.num_tokens, dtype=bool) for f in frames}
        blocks: dict[int, list[MemoryFrame]] = {}
        for f in frames:
            blocks.setdefault(self._block(f.turn), []).append(f)
        for group in blocks.values():
            masks = prune_block([f.points for f in group], self.cfg.voxel_size, self.cfg.min_keep_fraction,
                                [f.tokens_per_frame for f in group])
            out.update({f.turn: m for f, m in zip(group, masks)})
        return out

    def _finalize(self, before_block: int) -> None:
        todo = [f for f in self.frames if not f.final and self._block(f.turn) < before_block]
        if not todo:
            return
        masks = self._prune_groups(todo)
        st = self.stats
        st.blocks_pruned += len({self._block(f.turn) for f in todo})
        keep_frames = []
        for f in self.frames:
            if f.final or f.turn not in masks:
                keep_frames.append(f)
                continue
            m = masks[f.turn]
            st.pruned_valid_tokens += f.num_tokens  # not compacted yet: all its valid tokens
            st.pruned_kept_tokens += int(m.sum())
            f.final = True
            if not m.any():
                st.frames_dropped += 1
                continue
            sel = torch.as_tensor(np.flatnonzero(m), device=f.features.device)
            f.features, f.points, f.token_index = f.features[sel], f.points[m], f.token_index[m]
            keep_frames.append(f)
        self.frames = keep_frames

    def _thin(self) -> None:
        """Hold at most ``max_pool_frames``: drop the interior frame whose neighbours are closest."""
        while len(self.frames) > self.cfg.max_pool_frames:
            if len(self.frames) <= 2:
                self.frames.pop(0)
            else:
                turns = np.array([f.turn for f in self.frames])
                gaps = turns[2:] - turns[:-2]
                del self.frames[int(np.argmin(gaps)) + 1]
            self.stats.frames_thinned += 1

    def build(self, before_turn: int) -> tuple[torch.Tensor | None, list[int]]:
        """Memory tokens ``[n, D]`` (n <= max_tokens) from frames older than ``before_turn``.

        Returns the tokens (None when empty) and the turns of the frames used, oldest first.
        """
        pending = [f for f in self.frames if not f.final]
        masks = self._prune_groups(pending)  # the unfinished block, pruned without committing
        cands: list[tuple[MemoryFrame, np.ndarray | None]] = []
        for f in self.frames:
            if f.turn >= before_turn:
                continue
            m = masks.get(f.turn)
            if m is not None and not m.any():
                continue
            cands.append((f, m))
        counts = np.array([int(m.sum()) if m is not None else f.num_tokens for f, m in cands], dtype=np.int64)
        st = self.stats
        st.last_candidate_tokens = int(counts.sum())
        if not cands:
            st.last_memory_tokens = st.last_memory_frames = 0
            return None, []
        chosen = _uniform_cover(counts, self.cfg.max_tokens)
        parts, turns = [], []
        for i in chosen:
            f, m = cands[i]
            feats = f.features if m is None else f.features[torch.as_tensor(np.flatnonzero(m), device=f.features.device)]
            parts.append(feats)
            turns.append(f.turn)
        tokens = torch.cat(parts, dim=0)
        if tokens.shape[0] > self.cfg.max_tokens:  # trim the oldest frame's first tokens
            tokens = tokens[tokens.shape[0] - self.cfg.max_tokens:]
        st.last_memory_tokens = int(tokens.shape[0])
        st.last_memory_frames = len(turns)
        return tokens, turns


def _uniform_cover(counts: np.ndarray, cap: int) -> list[int]:
    """Fewest frames, spread uniformly over time (the newest always in), that hold ``cap`` tokens
    (all frames when they hold fewer). The caller trims the excess from the oldest frame, so the
    memory is exactly ``cap`` tokens once enough frames exist and the prefix length stays flat."""
    n = len(counts)
    for k in range(1, n + 1):
        idx = np.unique(np.round(np.linspace(n - 1, 0, k)).astype(np.int64))
        if counts[idx].sum() >= cap:
            return idx.tolist()
    return list(range(n))
