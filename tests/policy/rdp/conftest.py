"""Shared fixtures: small synthetic datasets and tiny trained checkpoints (built once per run)."""
from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

TINY = {  # tiny sizes so the whole folder runs in well under a minute on 2 cores
    "data": {"horizon": 16, "image_size": [32, 48]},
    "unet": {"down_dims": [16, 32], "step_embed_dim": 16},
    "obs": {"image_width": 8, "image_feature_dim": 16},
    "train": {"epochs": 2, "batch_size": 32, "lr": 2e-3, "warmup_steps": 0},
}


def _tiny_config(model_type: str, **over):
    from policy.rdp.config import PolicyConfig, preset

    d = preset("sim", model_type).to_dict()
    for k, v in TINY.items():
        d[k].update(v)
    for k, v in over.items():
        d[k].update(v)
    return PolicyConfig.from_dict(d)


@pytest.fixture(scope="session")
def tiny_config():
    """tiny_config(model_type, **section_overrides) -> PolicyConfig with test sizes."""
    return _tiny_config


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    from policy.rdp.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("ds") / "synthetic", episodes=5, length=48, seed=0)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, dataset):
    """Tokenizer, LDP and DP checkpoints trained for two short epochs, plus their exports."""
    from policy.rdp.export import export_checkpoint
    from policy.rdp.train import train

    root = tmp_path_factory.mktemp("ckpt")
    train("tokenizer", dataset, root / "tok", _tiny_config("rdp_tokenizer"), progress=False)
    train("ldp", dataset, root / "ldp", _tiny_config("rdp_ldp"), tokenizer=root / "tok", progress=False)
    train("dp", dataset, root / "dp", _tiny_config("dp", obs={"use_contact": True}), progress=False)
    for name in ("tok", "ldp", "dp"):
        export_checkpoint(root / name, root / f"onnx_{name}")
    return root
