"""Datasets as LeRobot (v3.0) writes and reads them: its info.json fields and nothing else,
integer fps, its video info keys, per-episode stats columns with quantiles, image stats over
sampled frames, stats.json as its aggregation of the episodes' stats, and its reader's video
timestamp tolerance (1/fps - 1e-4) on every frame."""
import json

import numpy as np
import pandas as pd
import pytest

from slowfast_data.writer import DatasetWriter, aggregate_stats, sample_frame_indices

#: the fields of LeRobot's DatasetInfo (meta/info.json); it warns about and drops any other
INFO_FIELDS = {"codebase_version", "fps", "features", "total_episodes", "total_frames", "total_tasks",
               "chunks_size", "data_files_size_in_mb", "video_files_size_in_mb", "data_path", "video_path",
               "robot_type", "splits"}
#: what LeRobot's get_video_info writes for a silent RGB H.264 stream
VIDEO_INFO = {"video.height", "video.width", "video.codec", "video.pix_fmt", "video.fps", "video.channels",
              "has_audio", "is_depth_map"}
STATS = {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}


def _to_array(v):
    """A parquet cell (nested object arrays for image stats) -> float ndarray."""
    if isinstance(v, np.ndarray) and v.dtype == object:
        return np.array([_to_array(x) for x in v], dtype=float)
    return np.asarray(v, dtype=float)


def test_info_stats_and_episodes_as_lerobot_writes_them(dataset):
    info = json.loads((dataset / "meta/info.json").read_text())
    assert set(info) == INFO_FIELDS
    assert isinstance(info["fps"], int) and info["robot_type"] == "synthetic"
    video = info["features"]["observation.images.wrist"]
    assert set(video["info"]) == VIDEO_INFO
    assert video["info"]["video.fps"] == info["fps"] and video["info"]["has_audio"] is False
    assert video["names"] == ["height", "width", "channels"]
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert info["features"][key]["shape"] == [1]

    eps = pd.read_parquet(dataset / "meta/episodes/chunk-000/file-000.parquet")
    data = pd.concat([pd.read_parquet(p) for p in sorted((dataset / "data").rglob("*.parquet"))])
    per_episode = []
    for _, row in eps.iterrows():
        st = {}
        for col in row.index:
            if col.startswith("stats/"):
                _, feat, stat = col.split("/", 2)
                st.setdefault(feat, {})[stat] = _to_array(row[col])
        per_episode.append(st)
        for feat in ("observation.tcp_pose", "action", "index", "timestamp", "observation.images.wrist"):
            assert set(st[feat]) == STATS, feat
        rows = data[data["episode_index"] == row["episode_index"]]
        pose = np.stack(rows["observation.tcp_pose"].to_numpy())
        np.testing.assert_allclose(st["observation.tcp_pose"]["mean"], pose.mean(0), atol=1e-6)
        np.testing.assert_allclose(st["observation.tcp_pose"]["q50"], np.quantile(pose, 0.5, axis=0), atol=1e-6)
        assert st["observation.tcp_pose"]["count"].tolist() == [len(rows)]
        assert st["index"]["min"].tolist() == [rows["index"].min()] and st["index"]["count"].tolist() == [len(rows)]
        img = st["observation.images.wrist"]
        assert img["mean"].shape == (3, 1, 1) and 0.0 <= img["min"].min() and img["max"].max() <= 1.0
        assert img["count"].tolist() == [len(sample_frame_indices(len(rows)))]   # frames, not pixels
    # stats.json is LeRobot's aggregation of the per-episode stats
    stats = json.loads((dataset / "meta/stats.json").read_text())
    agg = aggregate_stats(per_episode)
    for feat, st in stats.items():
        assert set(st) == STATS, feat
        for k, v in st.items():
            np.testing.assert_allclose(np.asarray(v, float), agg[feat][k], rtol=1e-9, atol=1e-12, err_msg=f"{feat}/{k}")
    all_pose = np.stack(data["observation.tcp_pose"].to_numpy())
    np.testing.assert_allclose(stats["observation.tcp_pose"]["mean"], all_pose.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["observation.tcp_pose"]["std"], all_pose.std(0), atol=1e-6)
    assert stats["observation.images.wrist"]["count"] == [sum(len(sample_frame_indices(n)) for n in eps["length"])]


def test_every_frame_decodes_within_lerobots_timestamp_tolerance(dataset):
    """LeRobot's reader asks for each frame at from_timestamp + timestamp and refuses a decoded
    frame farther than tolerance_s = 1/fps - 1e-4 from it."""
    import av

    info = json.loads((dataset / "meta/info.json").read_text())
    tol = 1.0 / info["fps"] - 1e-4
    eps = pd.read_parquet(dataset / "meta/episodes/chunk-000/file-000.parquet")
    key = "observation.images.wrist"
    for _, row in eps.iterrows():
        path = dataset / info["video_path"].format(video_key=key, chunk_index=int(row[f"videos/{key}/chunk_index"]),
                                                   file_index=int(row[f"videos/{key}/file_index"]))
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            decoded = np.array([float(f.pts * s.time_base) for f in c.decode(s)])
        d = pd.read_parquet(dataset / info["data_path"].format(chunk_index=int(row["data/chunk_index"]),
                                                               file_index=int(row["data/file_index"])))
        query = float(row[f"videos/{key}/from_timestamp"]) + d["timestamp"].to_numpy(float)
        gaps = np.abs(decoded[None, :] - query[:, None]).min(1)
        assert len(decoded) == len(d) and gaps.max() < tol


def test_a_fractional_fps_is_refused(tmp_path):
    with pytest.raises(ValueError, match="whole number"):
        DatasetWriter(tmp_path / "d", fps=29.97, arms=["arm"])
