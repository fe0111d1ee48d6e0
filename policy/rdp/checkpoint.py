"""Checkpoints as folders.

::

    CKPT/
      config.json            PolicyConfig (``model_type`` "rdp_tokenizer" | "rdp_ldp" | "dp")
      model.safetensors      weights
      ema.safetensors        EMA weights (rdp_ldp, dp)
      normalizer.json        statistics fitted on the training data (see normalizer.py)
      tokenizer/             rdp_ldp only: the tokenizer checkpoint it was trained with
      training_state/        resume: optimizer.safetensors, optimizer.json (param groups),
                             state.json (epoch, step, LR scheduler, EMA counters, RNG states),
                             rng.safetensors (torch RNG state)

A checkpoint is written to ``CKPT.tmp`` and renamed into place, so an interrupted write
never leaves a half checkpoint behind.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slowfast_data.fileio import load_safetensors, read_json

from .config import MODEL_TYPES, PolicyConfig
from .normalizer import Normalizer


@dataclass
class Checkpoint:
    path: Path
    config: PolicyConfig
    model: nn.Module
    normalizer: Normalizer
    ema_state: dict | None = None
    tokenizer: "Checkpoint | None" = None

    def model_for_inference(self) -> nn.Module:
        """The model with EMA weights when present, in eval mode."""
        if self.ema_state is not None:
            self.model.load_state_dict(self.ema_state)
            self.ema_state = None
        return self.model.eval()


def read_config(path: str | Path) -> PolicyConfig:
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"{path}: not a checkpoint (no config.json)")
    d = read_json(cfg_path)
    if not isinstance(d, dict):
        raise ValueError(f"{cfg_path}: not a checkpoint config (a JSON object expected)")
    if d.get("model_type") not in MODEL_TYPES:
        raise ValueError(f"{cfg_path}: model_type {d.get('model_type')!r} is not one of {MODEL_TYPES}")
    return PolicyConfig.from_dict(d)


def load_checkpoint(path: str | Path, expect: str | tuple[str, ...] | None = None,
                    map_location: str = "cpu") -> Checkpoint:
    """Load a checkpoint folder; ``expect`` = allowed model type(s) (ValueError otherwise)."""
    from .models import build_model

    path = Path(path)
    cfg = read_config(path)
    if expect is not None:
        allowed = (expect,) if isinstance(expect, str) else tuple(expect)
        if cfg.model_type not in allowed:
            raise ValueError(f"{path}: checkpoint is a {cfg.model_type!r} model, expected "
                             f"{' or '.join(repr(a) for a in allowed)}")
    norm_path = path / "normalizer.json"
    if not norm_path.is_file():
        raise ValueError(f"{path}: checkpoint has no normalizer.json")
    norm = Normalizer.load(norm_path)
    model = build_model(cfg, norm)
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ValueError(f"{path}: checkpoint has no model.safetensors")
    _load_state(model, load_safetensors(weights, device=map_location), weights)
    ema = None
    if (path / "ema.safetensors").is_file():
        ema = load_safetensors(path / "ema.safetensors", device=map_location)
    tok = None
    if cfg.model_type == "rdp_ldp":
        tok = load_checkpoint(path / "tokenizer", expect="rdp_tokenizer", map_location=map_location)
    return Checkpoint(path, cfg, model, norm, ema, tok)


def _load_state(model: nn.Module, state: dict, where: Path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or bad:
        raise ValueError(f"{where}: weights do not match the config: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}, wrong shape {bad[:3]}")
    model.load_state_dict(state)


def save_checkpoint(path: str | Path, cfg: PolicyConfig, model: nn.Module, normalizer: Normalizer,
                    ema_state: dict | None = None, train_state: dict | None = None,
                    tokenizer_dir: str | Path | None = None) -> Path:
    """Write the folder atomically (``path.tmp`` then rename). ``train_state`` keys:
    optimizer (state dict), state (JSON-able dict), rng (torch RNG ByteTensor)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    if ema_state is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in ema_state.items()}, str(tmp / "ema.safetensors"))
    normalizer.save(tmp / "normalizer.json")
    if tokenizer_dir is not None:
        src = Path(tokenizer_dir)
        keep = ("config.json", "model.safetensors", "normalizer.json")
        (tmp / "tokenizer").mkdir()
        for name in keep:
            shutil.copy2(src / name, tmp / "tokenizer" / name)
    if train_state is not None:
        ts = tmp / "training_state"
        ts.mkdir()
        opt = train_state["optimizer"]
        tensors, groups = flatten_optimizer_state(opt)
        save_file(tensors, str(ts / "optimizer.safetensors"))
        (ts / "optimizer.json").write_text(json.dumps(groups))
        (ts / "state.json").write_text(json.dumps(train_state["state"], indent=1))
        save_file({"torch_rng": train_state["rng"].contiguous()}, str(ts / "rng.safetensors"))
    old = path.with_name(path.name + ".old")
    if path.exists():
        if old.exists():
            shutil.rmtree(old)
        path.rename(old)
    tmp.rename(path)
    if old.exists():
        shutil.rmtree(old)
    return path


def flatten_optimizer_state(sd: dict) -> tuple[dict, dict]:
    tensors = {}
    scalars: dict = {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{name}"] = v.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[name] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_training_state(path: str | Path) -> dict:
    """Inverse of the ``train_state`` written by :func:`save_checkpoint`."""
    ts = Path(path) / "training_state"
    if not (ts / "state.json").is_file():
        raise ValueError(f"{path}: checkpoint has no training state to resume from")
    tensors = load_safetensors(ts / "optimizer.safetensors")
    meta = read_json(ts / "optimizer.json")
    state: dict = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for pid, d in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(d)
    return {"optimizer": {"state": state, "param_groups": meta["param_groups"]},
            "state": read_json(ts / "state.json"),
            "rng": load_safetensors(ts / "rng.safetensors")["torch_rng"]}
