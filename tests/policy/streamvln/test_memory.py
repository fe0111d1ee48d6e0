"""3-D aware memory pruning on hand-built scenes, and back-projection geometry."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from policy.streamvln.config import MemoryConfig
from policy.streamvln.memory import (FrameGeometry, SpatialMemory, backproject_tokens, prune_block,
                                     validate_intrinsics, validate_pose, voxel_keys)
from policy.streamvln.synthetic import BoxRoom, camera_pose, pinhole

V = 0.25  # voxel size


def voxel_centres(*cells):
    return np.array([(np.array(c) + 0.5) * V for c in cells], dtype=np.float64)


def frame(turn, points, dim=4):
    """Features encode (turn, token index) so kept tokens can be identified afterwards."""
    n = len(points)
    feats = torch.stack([torch.full((dim,), float(turn * 1000 + i)) for i in range(n)])
    return turn, feats, FrameGeometry(points=np.asarray(points, dtype=np.float64), valid=np.ones(n, dtype=bool))


def ids(tokens):
    return sorted(int(v) for v in tokens[:, 0].tolist())


def test_exactly_one_token_per_voxel_per_block_the_latest():
    # Block of 3 frames; voxel a seen by frames 0, 1, 2; b by 0, 1; c by 0; d twice by frame 2.
    a, b, c, d, e = (0, 0, 0), (1, 0, 0), (2, 0, 0), (0, 1, 0), (3, 3, 0)
    frames = [voxel_centres(a, b, c, e), voxel_centres(a, b), voxel_centres(a, d, d)]
    masks = prune_block(frames, V, 0.0, [len(f) for f in frames])
    kept = [(f, i) for f, m in enumerate(masks) for i in np.flatnonzero(m)]
    keys = [tuple(voxel_keys(frames[f][i:i + 1], V)[0]) for f, i in kept]
    assert len(keys) == len(set(keys)) == 5  # one per voxel
    assert (2, 0) in kept and (2, 1) in kept and (2, 2) not in kept  # a, d: latest frame (d once)
    assert (1, 1) in kept and (0, 1) not in kept  # b: frame 1, the latest that sees it
    assert (0, 2) in kept and (0, 3) in kept  # c, e: only frame 0 sees them


def test_pruning_is_per_temporal_block():
    cfg = MemoryConfig(voxel_size=V, block_frames=2, min_keep_fraction=0.0, max_tokens=1000)
    mem = SpatialMemory(cfg)
    same = voxel_centres((0, 0, 0), (1, 0, 0))
    for t in range(4):  # blocks {0, 1} and {2, 3}, every frame sees the same two voxels
        mem.add(*frame(t, same))
    tokens, turns = mem.build(before_turn=4)
    assert turns == [1, 3]  # the latest frame of each block keeps both voxels
    assert ids(tokens) == [1000, 1001, 3000, 3001]
    assert mem.stats.frames_dropped == 1  # frame 0 (block 1 is still open, pruned at build only)


def test_drops_a_frame_that_sees_only_already_seen_voxels():
    cfg = MemoryConfig(voxel_size=V, block_frames=8, min_keep_fraction=0.1, max_tokens=1000)
    mem = SpatialMemory(cfg)
    mem.add(*frame(0, voxel_centres((0, 0, 0), (1, 0, 0), (2, 0, 0))))
    mem.add(*frame(1, voxel_centres(*[(i, 0, 0) for i in range(6)])))  # sees everything frame 0 saw
    tokens, turns = mem.build(before_turn=2)
    assert turns == [1] and len(tokens) == 6
    mem.add(*frame(8, voxel_centres((9, 9, 0))))  # next block: frames 0-1 are finished for good
    assert mem.stats.frames_dropped == 1
    assert mem.stats.pruned_valid_tokens == 9 and mem.stats.pruned_kept_tokens == 6
    assert mem.stats.pruning_ratio == pytest.approx(1 / 3)


def test_drops_a_frame_left_with_fewer_than_theta_of_its_tokens():
    cfg = MemoryConfig(voxel_size=V, block_frames=8, min_keep_fraction=0.5, max_tokens=1000)
    mem = SpatialMemory(cfg)
    mem.add(*frame(0, voxel_centres((0, 0, 0), (1, 0, 0), (2, 0, 0), (7, 7, 7))))  # keeps 1 of 4 < 50 %
    mem.add(*frame(1, voxel_centres((0, 0, 0), (1, 0, 0), (2, 0, 0))))
    _, turns = mem.build(before_turn=2)
    assert turns == [1]


def test_memory_cap_takes_frames_uniformly_and_keeps_the_newest():
    cfg = MemoryConfig(voxel_size=V, block_frames=1, min_keep_fraction=0.0, max_tokens=6)
    mem = SpatialMemory(cfg)
    for t in range(10):
        mem.add(*frame(t, voxel_centres((t, 0, 0), (t, 1, 0))))
    tokens, turns = mem.build(before_turn=10)
    assert len(tokens) == 6 and len(turns) == 3
    assert turns[-1] == 9 and turns[0] == 0
    assert mem.build(before_turn=5)[1][-1] == 4  # only frames older than the window
    mem.cfg = MemoryConfig(voxel_size=V, block_frames=1, min_keep_fraction=0.0, max_tokens=5)
    tokens, turns = mem.build(before_turn=10)
    assert turns == [0, 4, 9] and ids(tokens) == [1, 4000, 4001, 9000, 9001]  # trimmed from the oldest
    mem.cfg = MemoryConfig(voxel_size=V, block_frames=1, min_keep_fraction=0.0, max_tokens=100)
    tokens, turns = mem.build(before_turn=10)
    assert turns == list(range(10)) and len(tokens) == 20  # fewer than the cap: everything


def test_never_keeps_a_token_with_invalid_depth():
    cfg = MemoryConfig(voxel_size=V, block_frames=2, min_keep_fraction=0.0, max_tokens=10_000,
                       depth_samples_per_token=2, min_depth=0.2, max_depth=5.0)
    side, h, w = 4, 40, 40
    K = pinhole(w, h)
    pose = np.eye(4)
    depth = np.full((h, w), 2.0, dtype=np.float32)
    depth[:10, :10] = np.nan  # token 0
    depth[:10, 10:20] = 0.0  # token 1 (no reading)
    depth[:10, 20:30] = 9.0  # token 2 (beyond max_depth)
    depth[:10, 30:40] = np.inf  # token 3
    depth[10:20, 0:10:2] = np.nan  # token 4: half its samples invalid -> still valid (>= 50 %)
    geo = backproject_tokens(depth, K, pose, side, cfg)
    assert geo.valid.tolist()[:5] == [False, False, False, False, True]
    assert np.isnan(geo.points[:4]).all() and np.isfinite(geo.points[4:]).all()
    mem = SpatialMemory(cfg)
    feats = torch.arange(side * side, dtype=torch.float32)[:, None].repeat(1, 3)
    mem.add(0, feats, geo)
    far = np.full((h, w), 3.0, dtype=np.float32)
    mem.add(1, feats + 100, backproject_tokens(far, K, pose, side, cfg))
    all_nan = np.full((h, w), np.nan, dtype=np.float32)
    mem.add(2, feats + 200, backproject_tokens(all_nan, K, pose, side, cfg))
    tokens, turns = mem.build(before_turn=3)
    kept = set(tokens[:, 0].tolist())
    assert not kept & {0.0, 1.0, 2.0, 3.0} and not any(v >= 200 for v in kept)
    assert turns == [0, 1]
    assert mem.stats.invalid_depth_tokens == 4 + 16
    assert mem.stats.frames_without_depth == 1


def test_backprojection_lands_on_the_rendered_surfaces():
    room = BoxRoom(size_x=6.0, size_y=5.0, height=2.7)
    w, h = 96, 72
    K = pinhole(w, h, hfov_deg=90)
    pose = camera_pose(2.0, 1.5, 0.7)
    rgb, depth = room.render(pose, K, w, h)
    assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
    geo = backproject_tokens(depth, K, pose, 14, MemoryConfig(depth_samples_per_token=1, max_depth=20.0))
    p = geo.points[geo.valid]
    assert len(p) > 150
    # every point lies on one of the six faces of the room (to within a pixel's footprint)
    dist = np.min(np.abs(np.concatenate([p, np.array([6.0, 5.0, 2.7]) - p], axis=1)), axis=1)
    assert np.percentile(dist, 90) < 0.05


def test_pose_and_intrinsics_validation():
    good = camera_pose(1.0, 2.0, 0.3)
    assert validate_pose(good).shape == (4, 4)
    bad = good.copy()
    bad[:3, :3] *= 1.1
    with pytest.raises(ValueError, match="orthonormal"):
        validate_pose(bad)
    refl = good.copy()
    refl[:3, 0] *= -1
    with pytest.raises(ValueError, match="reflection"):
        validate_pose(refl)
    nan = good.copy()
    nan[0, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        validate_pose(nan)
    with pytest.raises(ValueError, match="4x4"):
        validate_pose(np.eye(3))
    with pytest.raises(ValueError, match="focal"):
        validate_intrinsics(np.diag([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="3x3"):
        validate_intrinsics(np.eye(4))


@pytest.mark.parametrize("field,value", [("voxel_size", 0.0), ("block_frames", 0), ("min_keep_fraction", 1.5),
                                         ("max_tokens", 0), ("max_depth", -1.0), ("min_valid_depth_fraction", 0.0)])
def test_memory_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        MemoryConfig(**{field: value})
