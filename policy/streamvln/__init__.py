"""StreamVLN: model assembly, sliding-window KV cache, 3D-aware memory pruning."""
