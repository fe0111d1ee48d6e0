"""StreamVLN / LLaVA-Video model assembly from transformers parts.

``StreamVLNModel`` = SigLIP vision tower (features of its last encoder layer, no post-norm, no
head, as LLaVA's ``SigLipVisionTower`` after it deletes the final layer) -> 2-layer MLP projector
(Linear, GELU, Linear) -> 2-D pooling of the patch grid (27x27 -> 14x14 = 196 tokens at 384 px)
-> Qwen2 decoder. The model never owns a KV cache; :mod:`policy.streamvln.kv_window` does.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

from .config import VisionLanguageConfig

# SigLIP's image processor: resize to the square input size, scale to [0, 1], normalise with 0.5/0.5.
IMAGE_MEAN = 0.5
IMAGE_STD = 0.5


class StreamVLNModel(nn.Module):
    def __init__(self, text_config: Qwen2Config, vision_config: SiglipVisionConfig,
                 vl_config: VisionLanguageConfig | None = None):
        super().__init__()
        if not isinstance(text_config, Qwen2Config):
            raise ValueError(f"text_config must be a Qwen2Config, got {type(text_config).__name__}")
        if not isinstance(vision_config, SiglipVisionConfig):
            raise ValueError(f"vision_config must be a SiglipVisionConfig, got {type(vision_config).__name__}")
        if any(t != "full_attention" for t in text_config.layer_types):
            raise ValueError("text_config.layer_types must all be 'full_attention' (Qwen2 sliding-window "
                             "attention layers are not supported by the turn-level KV window)")
        vision_config = copy.deepcopy(vision_config)
        vision_config.vision_use_head = False  # LLaVA replaces the head with Identity
        self.text_config = text_config
        self.vision_config = vision_config
        self.vl_config = vl_config or VisionLanguageConfig()
        self.vision_tower = SiglipVisionModel(vision_config)
        hidden = text_config.hidden_size
        # Indices 0 and 2 match LLaVA's weight names mm_projector.0 / mm_projector.2.
        self.projector = nn.Sequential(nn.Linear(vision_config.hidden_size, hidden), nn.GELU(),
                                       nn.Linear(hidden, hidden))
        self.llm = Qwen2ForCausalLM(text_config)

    def reset_rotary(self) -> None:
        """Rebuild the RoPE buffers in float32 on the model's device. ``Module.to(bfloat16)`` also
        casts ``inv_freq``, and bf16 angles drift by whole radians at positions in the thousands."""
        from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding

        self.llm.model.rotary_emb = Qwen2RotaryEmbedding(config=self.text_config).to(self.device)

    def to_dtype(self, dtype: torch.dtype) -> "StreamVLNModel":
        """Cast the weights to ``dtype``, keeping RoPE frequencies in float32."""
        self.to(dtype=dtype)
        self.reset_rotary()
        return self

    # ---- geometry of the token grid -------------------------------------------------------
    @property
    def image_size(self) -> int:
        size = self.vision_config.image_size
        return int(size if isinstance(size, int) else size[0])

    @property
    def patches_per_side(self) -> int:
        patch = self.vision_config.patch_size
        patch = int(patch if isinstance(patch, int) else patch[0])
        return self.image_size // patch

    @property
    def pooled_side(self) -> int:
        p, s = self.patches_per_side, self.vl_config.pool_stride
        return math.ceil(p / s) if self.vl_config.pool_mode == "bilinear" else p // s

    @property
    def tokens_per_frame(self) -> int:
        return self.pooled_side ** 2

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    @property
    def device(self) -> torch.device:
        return self.projector[0].weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.projector[0].weight.dtype

    # ---- vision ---------------------------------------------------------------------------
    def preprocess(self, rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 RGB ``[H, W, 3]`` (or ``[B, H, W, 3]``) -> normalised pixels ``[B, 3, S, S]``.

        The image is resized (squashed) to the square input size like SigLIP's processor, so
        token cell (i, j) of the pooled grid covers the same fraction of the original image.
        """
        x = torch.as_tensor(rgb)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"rgb must be [H, W, 3] or [B, H, W, 3], got shape {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).to(device=self.device, dtype=torch.float32)  # uint8, or floats 0..255
        size = self.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        x = (x.clamp(0, 255) / 255.0 - IMAGE_MEAN) / IMAGE_STD
        return x.to(dtype=self.dtype)

    def pool2d(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, P*P, D]`` patch tokens -> ``[B, tokens_per_frame, D]`` (raster order)."""
        b, n, d = features.shape
        p = self.patches_per_side
        if n != p * p:
            raise ValueError(f"expected {p * p} patch tokens, got {n}")
        x = features.view(b, p, p, d).permute(0, 3, 1, 2)
        s = self.vl_config.pool_stride
        mode = self.vl_config.pool_mode
        if mode == "bilinear":
            x = F.interpolate(x, size=(self.pooled_side, self.pooled_side), mode="bilinear", align_corners=False)
        elif mode == "average":
            x = F.avg_pool2d(x, s)
        else:
            x = F.max_pool2d(x, s)
        return x.permute(0, 2, 3, 1).reshape(b, -1, d)

    @torch.inference_mode()
    def encode_frames(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pixels ``[B, 3, S, S]`` -> frame tokens ``[B, tokens_per_frame, hidden]``."""
        vt = self.vision_tower
        h = vt.embeddings(pixel_values.to(device=self.device, dtype=self.dtype))
        h = vt.encoder(inputs_embeds=h).last_hidden_state
        return self.pool2d(self.projector(h))

    # ---- language -------------------------------------------------------------------------
    def embed_ids(self, ids) -> torch.Tensor:
        """Token ids (sequence of ints or 1-D tensor) -> embeddings ``[n, hidden]``."""
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device).reshape(-1)
        return self.llm.get_input_embeddings()(ids)

    @torch.inference_mode()
    def decode(self, embeds: torch.Tensor, position_ids: torch.Tensor, cache=None,
               attention_mask: torch.Tensor | None = None, logits_to_keep: int = 1) -> torch.Tensor:
        """One decoder pass over ``embeds [1, n, D]`` at explicit ``position_ids [1, n]``.

        With ``cache`` (a ``DynamicCache``) the new keys/values are appended to it; the causal
        mask is by cache index, RoPE by ``position_ids``. Returns logits ``[1, k, vocab]``.
        """
        return self._decode(embeds, position_ids, cache, attention_mask, logits_to_keep)

    @torch.no_grad()
    def decode_no_grad(self, embeds: torch.Tensor, position_ids: torch.Tensor, cache=None,
                       attention_mask: torch.Tensor | None = None, logits_to_keep: int = 1) -> torch.Tensor:
        """``decode`` under ``no_grad`` instead of ``inference_mode``: for ``torch.compile`` with
        inductor, whose graphs cannot mutate a cache from inside inference mode."""
        return self._decode(embeds, position_ids, cache, attention_mask, logits_to_keep)

    def _decode(self, embeds, position_ids, cache, attention_mask, logits_to_keep) -> torch.Tensor:
        out = self.llm(inputs_embeds=embeds, position_ids=position_ids, cache=cache,
                       attention_mask=attention_mask, use_cache=cache is not None,
                       logits_to_keep=logits_to_keep)
        return out.logits
