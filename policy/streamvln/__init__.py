"""StreamVLN: model assembly, sliding-window KV cache, 3D memory pruning.

Public API (what the nav node uses)::

    from policy.streamvln import AgentConfig, StreamVLNAgent, load_streamvln
    model, tokenizer = load_streamvln("/path/to/checkpoint", dtype=torch.bfloat16, device="cuda")
    agent = StreamVLNAgent(model, tokenizer, AgentConfig())
    agent.reset(instruction)
    actions = agent.step(rgb, depth_m, K, pose_world_from_camera)   # list[Action], <= 4; [] = skipped
    agent.stats.as_dict()

Heavy imports (torch, transformers) happen on first attribute access, so importing the package
stays cheap.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Action": "actions", "ParseResult": "actions", "parse_actions": "actions", "format_actions": "actions",
    "AgentConfig": "config", "MemoryConfig": "config", "PromptConfig": "config", "VisionLanguageConfig": "config",
    "StreamVLNAgent": "agent", "AgentStats": "agent",
    "StreamVLNModel": "model",
    "load_streamvln": "checkpoint", "save_streamvln": "checkpoint", "CheckpointError": "checkpoint",
    "load_tokenizer_from": "checkpoint",
    "SpatialMemory": "memory", "backproject_tokens": "memory",
    "KVWindow": "kv_window",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
