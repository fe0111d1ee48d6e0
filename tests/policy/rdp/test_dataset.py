"""The dataset contract: the writer's layout, the reader's samples and its clear errors."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from policy.rdp.dataset import ChunkSamples, required_keys
from slowfast_data.reader import LeRobotDataset
from policy.rdp.synthetic import make_dataset, make_episode
from slowfast_data.writer import DatasetWriter


def test_writer_layout(dataset):
    info = json.loads((dataset / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 50 and isinstance(info["fps"], int)
    side = json.loads((dataset / "meta/slowfast.json").read_text())
    assert side["arms"] == ["right"] and side["tactile_markers"] == 8 and side["cameras"] == ["wrist"]
    assert info["total_episodes"] == 5 and info["total_frames"] == 5 * 48
    for key, shape in {"observation.tcp_pose": [7], "observation.wrench": [6], "observation.tactile": [32],
                       "action": [7], "observation.images.wrist": [32, 48, 3]}.items():
        assert info["features"][key]["shape"] == shape
    stats = json.loads((dataset / "meta/stats.json").read_text())
    for key in ("observation.tcp_pose", "action", "observation.wrench", "observation.images.wrist"):
        assert {"mean", "std", "min", "max"} <= set(stats[key])
    eps = pd.read_parquet(dataset / "meta/episodes/chunk-000/file-000.parquet")
    assert list(eps["length"]) == [48] * 5 and list(eps["dataset_from_index"]) == [0, 48, 96, 144, 192]
    tasks = pd.read_parquet(dataset / "meta/tasks.parquet")
    assert list(tasks.index) == ["yield to force"]
    df = pd.read_parquet(dataset / "data/chunk-000/file-001.parquet")
    assert {"index", "episode_index", "frame_index", "timestamp", "task_index"} <= set(df.columns)
    assert (dataset / "videos/observation.images.wrist/chunk-000/file-004.mp4").is_file()
    # stats match the data
    all_pose = np.concatenate([np.stack(pd.read_parquet(p)["observation.tcp_pose"].to_numpy())
                               for p in sorted((dataset / "data").rglob("*.parquet"))])
    assert np.allclose(stats["observation.tcp_pose"]["mean"], all_pose.mean(0), atol=1e-5)


def test_reader_samples(dataset, tiny_config):
    cfg = tiny_config("rdp_ldp")
    ds = LeRobotDataset(dataset, require=required_keys(cfg))
    norm = ChunkSamples.fit(ds, cfg, ds.ep_ids)
    s = ChunkSamples(ds, cfg, norm)
    assert len(s) == 240
    x = s[50]
    assert x["action"].shape == (16, 9) and x["contact"].shape == (16, 6)
    assert x["obs_proprio"].shape == (2, 9) and x["obs_contact"].shape == (2, 6)
    assert x["obs_images"].shape == (1, 2, 3, 32, 48) and x["obs_images"].dtype == np.uint8
    # video frames decode close to what was written (H.264 is lossy)
    ep = make_episode(np.random.default_rng(0), 48, 1, 8, (32, 48))
    frames = ds.video("wrist", 0, (32, 48))
    assert np.abs(frames.astype(int) - ep["observation.images.wrist"].astype(int)).mean() < 6
    # relative actions: the first target is one step ahead of the start pose, close to identity
    rel = norm.unnormalize("action", x["action"])
    assert np.abs(rel[0, :3]).max() < 0.05 and np.allclose(rel[0, 3:], [1, 0, 0, 0, 1, 0], atol=0.05)
    assert cfg.shapes["action_dim"] == 9 and cfg.shapes["contact_raw_dim"] == 6 and cfg.shapes["fps"] == 50.0


def test_tactile_contact_uses_pca(dataset, tiny_config):
    cfg = tiny_config("rdp_tokenizer", data={"contact": "tactile", "tactile_pca_dim": 3})
    ds = LeRobotDataset(dataset, require=required_keys(cfg))
    norm = ChunkSamples.fit(ds, cfg, ds.ep_ids)
    assert norm.contact_pca["components"].shape == (3, 16)
    s = ChunkSamples(ds, cfg, norm)
    assert s[0]["contact"].shape == (16, 3)
    # the first component tracks the force that moves the markers
    emb = norm.tactile_embedding(ds.data["observation.tactile"], 1)[:, 0]
    fz = ds.data["observation.wrench"][:, 2]
    assert abs(np.corrcoef(emb, fz)[0, 1]) > 0.9


def test_missing_key_is_named(tmp_path, dataset, tiny_config):
    w = DatasetWriter(tmp_path / "d", fps=50, arms=["right"], tactile_markers=0)
    ep = make_episode(np.random.default_rng(0), 20, 1, 0, None)
    w.add_episode(ep)
    w.finalize()
    cfg = tiny_config("rdp_tokenizer", data={"contact": "tactile"})
    with pytest.raises(ValueError, match=r"missing feature\(s\) \['observation.tactile'\]"):
        LeRobotDataset(tmp_path / "d", require=required_keys(cfg))
    cfg = tiny_config("rdp_ldp", data={"cameras": ["wrist"]})
    with pytest.raises(ValueError, match="observation.images.wrist"):
        LeRobotDataset(tmp_path / "d", require=required_keys(cfg))


def test_rate_mismatches(tmp_path, dataset):
    with pytest.raises(ValueError, match="fps 50 does not match the expected 200"):
        LeRobotDataset(dataset, fps=200)
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    info = json.loads((bad / "meta/info.json").read_text())
    info["fps"] = 100.0
    info["features"]["observation.images.wrist"]["info"]["video.fps"] = 100.0
    (bad / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"timestamps step 0.02 s \(50 Hz\), fps in info.json is 100"):
        LeRobotDataset(bad)
    info["features"]["observation.images.wrist"]["info"]["video.fps"] = 30.0
    (bad / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="video 'observation.images.wrist' is at 30.0 fps"):
        LeRobotDataset(bad)


def test_shape_mismatch_and_not_a_dataset(tmp_path, dataset):
    with pytest.raises(ValueError, match="not a LeRobot dataset"):
        LeRobotDataset(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    info = json.loads((bad / "meta/info.json").read_text())
    info["features"]["observation.wrench"]["shape"] = [3]
    (bad / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"'observation.wrench' has shape \[3\], expected \[6\]"):
        LeRobotDataset(bad)


def test_writer_rejects_bad_episodes(tmp_path):
    w = DatasetWriter(tmp_path / "d", fps=50, arms=["right"], cameras={"wrist": (32, 48)}, tactile_markers=8)
    ep = make_episode(np.random.default_rng(0), 10, 1, 8, (32, 48))
    missing = {k: v for k, v in ep.items() if k != "observation.wrench"}
    with pytest.raises(ValueError, match="missing feature"):
        w.add_episode(missing)
    nan = dict(ep)
    nan["observation.wrench"] = ep["observation.wrench"].copy()
    nan["observation.wrench"][3, 1] = np.nan
    with pytest.raises(ValueError, match="observation.wrench.*NaN"):
        w.add_episode(nan)
    with pytest.raises(ValueError, match="finalize: no episodes"):
        w.finalize()
    with pytest.raises(OSError, match="not empty"):
        (tmp_path / "e").mkdir()
        (tmp_path / "e" / "x").write_text("")
        DatasetWriter(tmp_path / "e", fps=50, arms=["right"])


def test_two_arms(tmp_path, tiny_config):
    root = make_dataset(tmp_path / "two", episodes=2, length=24, arms=2, markers=4, image_size=None)
    cfg = tiny_config("rdp_tokenizer", data={"val_fraction": 0.0})
    ds = LeRobotDataset(root, require=required_keys(cfg))
    norm = ChunkSamples.fit(ds, cfg, ds.ep_ids)
    x = ChunkSamples(ds, cfg, norm)[3]
    assert ds.arms == ["right", "left"] and x["action"].shape == (16, 18) and x["contact"].shape == (16, 12)
