"""Checkpoint folder in the LLaVA-Video / StreamVLN layout: round trip and clear errors."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from policy.streamvln.checkpoint import INDEX_FILE, CheckpointError, load_streamvln, save_streamvln


@pytest.fixture()
def saved(tmp_path, small_model, tokenizer):
    folder = tmp_path / "ckpt"
    save_streamvln(small_model, folder, tokenizer, max_shard_bytes=200_000)  # several shards
    return folder


def test_round_trip_sharded(saved, small_model, tokenizer):
    index = json.loads((saved / INDEX_FILE).read_text())
    names = set(index["weight_map"])
    assert len(set(index["weight_map"].values())) > 1
    # published naming
    assert "model.embed_tokens.weight" in names and "lm_head.weight" in names
    assert "model.mm_projector.0.weight" in names and "model.mm_projector.2.bias" in names
    assert any(n.startswith("model.vision_tower.vision_tower.vision_model.encoder.layers.0.") for n in names)
    cfg = json.loads((saved / "config.json").read_text())
    assert cfg["model_type"] == "llava_qwen" and cfg["mm_projector_type"] == "mlp2x_gelu"

    model, tok = load_streamvln(saved)
    ref = small_model.state_dict()
    got = model.state_dict()
    assert set(ref) == set(got)
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert tok("hi \u2191 STOP<|im_end|>")["input_ids"] == tokenizer("hi \u2191 STOP<|im_end|>")["input_ids"]
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    torch.testing.assert_close(model.encode_frames(model.preprocess(rgb)),
                               small_model.encode_frames(small_model.preprocess(rgb)), atol=0, rtol=0)
    e = small_model.embed_ids(list(range(30)))[None]
    pos = torch.arange(30)[None]
    torch.testing.assert_close(model.decode(e, pos, logits_to_keep=0), small_model.decode(e, pos, logits_to_keep=0),
                               atol=1e-5, rtol=0)


def test_load_in_bfloat16_keeps_rope_in_float32(saved):
    model, _ = load_streamvln(saved, dtype=torch.bfloat16, load_tokenizer=False)
    assert model.llm.model.embed_tokens.weight.dtype == torch.bfloat16
    assert model.projector[0].weight.dtype == torch.bfloat16
    assert model.llm.model.rotary_emb.inv_freq.dtype == torch.float32
    e = model.embed_ids([1, 2, 3])[None]
    assert torch.isfinite(model.decode(e, torch.tensor([[0, 1, 5000]])).float()).all()


def test_single_file_and_published_config_without_vision_config(tmp_path, small_model):
    folder = tmp_path / "single"
    save_streamvln(small_model, folder)
    assert (folder / "model.safetensors").is_file()
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["vision_config"]  # a published config names the tower instead
    cfg["mm_vision_tower"] = "google/siglip-so400m-patch14-384"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="mm_hidden_size"):  # so400m is 1152 wide, this tower is not
        load_streamvln(folder, load_tokenizer=False)


def test_missing_shard(saved):
    shard = sorted(saved.glob("model-*.safetensors"))[1]
    os.remove(shard)
    with pytest.raises(CheckpointError, match="missing weight shard"):
        load_streamvln(saved)


def test_unknown_weight(saved):
    shard = sorted(saved.glob("model-*.safetensors"))[0]
    tensors = load_file(str(shard))
    tensors["model.some_adapter.weight"] = torch.zeros(2)
    save_file(tensors, str(shard))
    index = json.loads((saved / INDEX_FILE).read_text())
    index["weight_map"]["model.some_adapter.weight"] = shard.name
    (saved / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="unknown weight"):
        load_streamvln(saved)


def test_missing_weight(saved):
    index = json.loads((saved / INDEX_FILE).read_text())
    del index["weight_map"]["model.norm.weight"]
    (saved / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="missing"):
        load_streamvln(saved)


def test_shape_mismatch(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["intermediate_size"] += 8
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape"):
        load_streamvln(saved)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_streamvln(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(CheckpointError, match="not a StreamVLN"):
        load_streamvln(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_streamvln(tmp_path)
    with pytest.raises(CheckpointError, match="not a folder"):
        load_streamvln(tmp_path / "nope")


def test_no_weights(tmp_path, small_model):
    save_streamvln(small_model, tmp_path)
    os.remove(tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="no weights"):
        load_streamvln(tmp_path)


def test_agent_runs_on_a_loaded_checkpoint_with_its_own_tokenizer(saved):
    from policy.streamvln import AgentConfig, StreamVLNAgent
    from policy.streamvln.synthetic import BoxRoom, camera_pose, pinhole

    model, tok = load_streamvln(saved)
    agent = StreamVLNAgent(model, tok, AgentConfig(max_new_tokens=3))
    agent.reset("Go to the kitchen.")
    K = pinhole(64, 48)
    pose = camera_pose(2.0, 2.0, 0.0)
    rgb, depth = BoxRoom().render(pose, K, 64, 48)
    actions = agent.step(rgb, depth, K, pose)
    assert 1 <= len(actions) <= 4 and agent.stats.turns == 1
