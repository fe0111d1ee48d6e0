"""Load (and save) a StreamVLN / LLaVA-Video checkpoint folder.

Layout (as published for LLaVA-Video-7B-Qwen2 and StreamVLN)::

    config.json                     Qwen2 fields at top level + mm_* fields, model_type llava_qwen
    model.safetensors               or model-0000k-of-0000n.safetensors + model.safetensors.index.json
    tokenizer.json / vocab.json ... the Qwen2 tokenizer (optional for the model, needed by the agent)

Weight names and where they go::

    model.embed_tokens.* / model.layers.* / model.norm.*  -> llm.model.*
    lm_head.weight                                        -> llm.lm_head.weight
    model.vision_tower.vision_tower.vision_model.*        -> vision_tower.*  (SigLIP)
    model.mm_projector.{0,2}.*                            -> projector.{0,2}.*
    model.image_newline, ...vision_model.head.*           known, unused by StreamVLN: ignored

The SigLIP configuration is not in a published config.json (the tower is named by
``mm_vision_tower``); for so400m it is known, and the number of layers is read from the weights
(LLaVA deletes the last one). Folders written by :func:`save_streamvln` carry ``vision_config``.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from transformers import Qwen2Config, SiglipVisionConfig

from slowfast_data.fileio import open_safetensors, read_json

from .config import VisionLanguageConfig
from .model import StreamVLNModel

CONFIG_NAME = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
ARCHITECTURES = ("StreamVLNForCausalLM", "LlavaQwenForCausalLM")
MODEL_TYPES = ("llava_qwen", "streamvln")

VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
PROJECTOR_PREFIX = "model.mm_projector."
IGNORED = (re.compile(r"^model\.image_newline$"), re.compile(r"^model\.vision_tower\.vision_tower\.vision_model\.head\."))

# google/siglip-so400m-patch14-384 (the tower of LLaVA-Video and StreamVLN).
SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
              image_size=384, patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)


class CheckpointError(ValueError):
    """The folder is not a loadable StreamVLN / LLaVA-Video checkpoint; the message says why."""


def to_model_name(name: str) -> str | None:
    """Checkpoint weight name -> ``StreamVLNModel`` parameter name (None: not ours)."""
    if name.startswith(VISION_PREFIX):
        return "vision_tower." + name[len(VISION_PREFIX):]
    if name.startswith(PROJECTOR_PREFIX):
        return "projector." + name[len(PROJECTOR_PREFIX):]
    if name.startswith("model.vision_tower.") or name.startswith("model.mm_"):
        return None
    if name.startswith("model."):
        return "llm." + name
    if name == "lm_head.weight":
        return "llm.lm_head.weight"
    return None


def to_checkpoint_name(name: str) -> str:
    if name.startswith("vision_tower."):
        return VISION_PREFIX + name[len("vision_tower."):]
    if name.startswith("projector."):
        return PROJECTOR_PREFIX + name[len("projector."):]
    if name.startswith("llm."):
        return name[len("llm."):]
    raise ValueError(f"unexpected parameter {name}")


def _read_config(folder: Path) -> dict:
    path = folder / CONFIG_NAME
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder")
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a StreamVLN checkpoint: no {CONFIG_NAME}")
    try:
        cfg = read_json(path)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    archs = cfg.get("architectures") or []
    if cfg.get("model_type") not in MODEL_TYPES and not any(a in ARCHITECTURES for a in archs):
        raise CheckpointError(
            f"{folder} is not a StreamVLN / LLaVA-Video checkpoint: model_type={cfg.get('model_type')!r}, "
            f"architectures={archs} (expected model_type in {MODEL_TYPES} or an architecture in {ARCHITECTURES})")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "mm_hidden_size"):
        if key not in cfg:
            raise CheckpointError(f"{path} lacks {key!r}, needed to build the model")
    return cfg


def _weight_files(folder: Path) -> dict[str, Path]:
    """weight name -> shard file, checking that every shard exists."""
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = read_json(index)["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index} is not a valid safetensors index: {exc}") from exc
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise CheckpointError(f"{folder}: missing weight shard(s) {missing} listed in {INDEX_FILE}")
        files = {name: folder / shard for name, shard in weight_map.items()}
        for shard in shards:  # every listed tensor must really be in its shard
            with open_safetensors(folder / shard) as fh:
                present = set(fh.keys())
            absent = [n for n, s in weight_map.items() if s == shard and n not in present]
            if absent:
                raise CheckpointError(f"{folder / shard} lacks {len(absent)} tensor(s) listed in the index, "
                                      f"e.g. {absent[:3]}")
        return files
    single = folder / SINGLE_FILE
    if single.is_file():
        with open_safetensors(single) as fh:
            return {name: single for name in fh.keys()}
    shards = sorted(folder.glob("*.safetensors"))
    if shards:
        raise CheckpointError(f"{folder}: safetensors shards {[s.name for s in shards]} but no {INDEX_FILE}")
    raise CheckpointError(f"{folder} has no weights: neither {SINGLE_FILE} nor {INDEX_FILE}")


def _configs(cfg: dict, weight_names) -> tuple[Qwen2Config, SiglipVisionConfig, VisionLanguageConfig]:
    known = set(Qwen2Config().to_dict()) | {"rope_theta", "rope_scaling"}
    drop = {"architectures", "model_type", "transformers_version", "_name_or_path", "dtype", "torch_dtype",
            "layer_types"}
    text_kwargs = {k: v for k, v in cfg.items() if k in known and k not in drop}
    if text_kwargs.get("rope_scaling") is None:
        text_kwargs.pop("rope_scaling", None)
    text_kwargs["use_sliding_window"] = False  # Qwen2-7B ships it disabled; the window here is ours
    try:
        text = Qwen2Config(**text_kwargs)
    except Exception as exc:  # noqa: BLE001 - the message is what matters
        raise CheckpointError(f"config.json does not describe a Qwen2 decoder: {exc}") from exc

    if isinstance(cfg.get("vision_config"), dict):
        vkw = {k: v for k, v in cfg["vision_config"].items() if k in set(SiglipVisionConfig().to_dict())
               and k not in {"architectures", "model_type", "transformers_version", "_name_or_path", "dtype"}}
    else:
        tower = str(cfg.get("mm_vision_tower", ""))
        if "siglip-so400m-patch14-384" not in tower:
            raise CheckpointError(f"unknown vision tower {tower!r}: config.json has no vision_config and only "
                                  "google/siglip-so400m-patch14-384 is known")
        vkw = dict(SO400M)
    layer_ids = {int(m.group(1)) for n in weight_names
                 if (m := re.match(re.escape(VISION_PREFIX) + r"encoder\.layers\.(\d+)\.", n))}
    if layer_ids:
        vkw["num_hidden_layers"] = max(layer_ids) + 1
    vkw["vision_use_head"] = False
    if vkw.get("hidden_size") != cfg["mm_hidden_size"]:
        raise CheckpointError(f"mm_hidden_size {cfg['mm_hidden_size']} != vision hidden_size {vkw.get('hidden_size')}")
    vision = SiglipVisionConfig(**vkw)
    try:
        vl = VisionLanguageConfig(projector_type=cfg.get("mm_projector_type", "mlp2x_gelu"),
                                  pool_mode=cfg.get("mm_spatial_pool_mode", "bilinear"),
                                  pool_stride=int(cfg.get("mm_spatial_pool_stride", 2)))
    except ValueError as exc:
        raise CheckpointError(f"config.json: {exc}") from exc
    return text, vision, vl


def _materialize_buffers(model: StreamVLNModel, device) -> None:
    """Non-persistent buffers are not in the checkpoint; rebuild those left on the meta device."""
    model.reset_rotary()  # float32, on the device of the loaded weights
    emb = model.vision_tower.embeddings
    if hasattr(emb, "position_ids"):
        emb.register_buffer("position_ids", torch.arange(emb.num_positions, device=device).expand((1, -1)),
                            persistent=False)
    left = [n for n, b in model.named_buffers() if b.is_meta]
    if left:
        raise RuntimeError(f"buffers left uninitialised after loading: {left}")


def load_streamvln(folder, dtype: torch.dtype = torch.float32, device="cpu", load_tokenizer: bool = True):
    """Build the model from a checkpoint folder. Returns ``(model, tokenizer or None)``.

    Raises :class:`CheckpointError` for a folder that is not such a checkpoint, missing shards,
    unknown or missing weights, or shape mismatches.
    """
    folder = Path(folder)
    cfg = _read_config(folder)
    files = _weight_files(folder)
    text, vision, vl = _configs(cfg, files.keys())
    with torch.device("meta"):
        model = StreamVLNModel(text, vision, vl)
    expected = model.state_dict()
    mapping: dict[str, str] = {}
    unknown = []
    for name in files:
        if any(p.search(name) for p in IGNORED):
            continue
        target = to_model_name(name)
        if target is None or target not in expected:
            unknown.append(name)
        else:
            mapping[target] = name
    if unknown:
        raise CheckpointError(f"{folder}: {len(unknown)} unknown weight(s), e.g. {sorted(unknown)[:5]}")
    tied = bool(text.tie_word_embeddings)
    missing = [n for n in expected if n not in mapping and not (tied and n == "llm.lm_head.weight")]
    if missing:
        raise CheckpointError(f"{folder}: {len(missing)} weight(s) missing, e.g. {missing[:5]}")

    state: dict[str, torch.Tensor] = {}
    by_file: dict[Path, list[str]] = {}
    for target, name in mapping.items():
        by_file.setdefault(files[name], []).append(target)
    for path, targets in by_file.items():
        with open_safetensors(path) as fh:
            for target in targets:
                tensor = fh.get_tensor(mapping[target])
                if tuple(tensor.shape) != tuple(expected[target].shape):
                    raise CheckpointError(f"{mapping[target]}: shape {tuple(tensor.shape)} in the checkpoint, "
                                          f"{tuple(expected[target].shape)} expected by config.json")
                state[target] = tensor.to(device=device, dtype=dtype)
    model.load_state_dict(state, strict=not tied, assign=True)
    if tied:
        model.llm.lm_head.weight = model.llm.model.embed_tokens.weight
    _materialize_buffers(model, device)  # weights are already in dtype; RoPE stays float32
    model = model.eval()

    tokenizer = None
    if load_tokenizer:
        tokenizer = load_tokenizer_from(folder)
    return model, tokenizer


def load_tokenizer_from(folder):
    """The checkpoint's own tokenizer (Qwen2's for real checkpoints)."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = Path(folder)
    if not any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json", "tokenizer_config.json")):
        raise CheckpointError(f"{folder} has no tokenizer files (tokenizer.json or vocab.json + merges.txt)")
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # AutoTokenizer warns that model_type llava_qwen is not its own
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{folder}: tokenizer files could not be loaded: {exc}") from exc
    finally:
        hf_logging.set_verbosity(level)


def save_streamvln(model: StreamVLNModel, folder, tokenizer=None, max_shard_bytes: int = 2 * 1024**3) -> None:
    """Write ``model`` in the LLaVA-Video / StreamVLN layout (sharded when larger than one shard)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = model.text_config.to_dict()
    for k in ("architectures", "model_type", "transformers_version", "_name_or_path", "dtype", "layer_types"):
        text.pop(k, None)
    vision = model.vision_config.to_dict()
    for k in ("architectures", "transformers_version", "_name_or_path", "dtype"):
        vision.pop(k, None)
    vl = model.vl_config
    cfg = {"architectures": ["StreamVLNForCausalLM"], "model_type": "llava_qwen", **text,
           "mm_hidden_size": model.vision_config.hidden_size, "mm_projector_type": vl.projector_type,
           "mm_spatial_pool_mode": vl.pool_mode, "mm_spatial_pool_stride": vl.pool_stride,
           "mm_vision_select_feature": "patch", "mm_vision_select_layer": -1, "vision_config": vision}
    (folder / CONFIG_NAME).write_text(json.dumps(cfg, indent=2, sort_keys=True))

    state = {to_checkpoint_name(n): t.detach().to("cpu").contiguous().clone() for n, t in model.state_dict().items()}
    if model.text_config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(state):
        nbytes = state[name].numel() * state[name].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = state[name]
        size += nbytes
    for stale in list(folder.glob("model*.safetensors")) + [folder / INDEX_FILE]:
        if stale.exists():
            os.remove(stale)
    if len(shards) == 1:
        save_file(shards[0], str(folder / SINGLE_FILE), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards, start=1):
            fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(folder / fname), metadata={"format": "pt"})
            weight_map.update({n: fname for n in shard})
        total = sum(t.numel() * t.element_size() for t in state.values())
        (folder / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                                    indent=2, sort_keys=True))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
