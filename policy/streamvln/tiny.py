"""Small random models of the StreamVLN architecture, for tests and CPU benchmarks.

Weights cannot be downloaded here, so tests and ``slowfast bench vln`` build the same
architecture (Qwen2 decoder, SigLIP tower, 2-layer MLP projector, 2x2 pooling) at toy sizes,
plus a byte-level tokenizer built in code (no merges: every string is tokenisable) with the
Qwen2 chat markers and the action symbols as single tokens.
"""
from __future__ import annotations

import torch
from transformers import Qwen2Config, SiglipVisionConfig

from .config import VisionLanguageConfig
from .model import StreamVLNModel

CHAT_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
ACTION_TOKENS = ("\u2191", "\u2190", "\u2192", "STOP")


def _with_chat_and_action_tokens(backend):
    """Wrap a ``tokenizers`` backend; add the Qwen2 chat markers and the action symbols as single tokens."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=backend)
    tok.add_special_tokens({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                            "additional_special_tokens": list(CHAT_SPECIAL_TOKENS)})
    tok.add_tokens(list(ACTION_TOKENS))
    return tok


def build_tiny_tokenizer():
    """A ``PreTrainedTokenizerFast``: 256 byte tokens + chat markers + action symbols."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return _with_chat_and_action_tokens(backend)


def build_corpus_tokenizer(texts, vocab_size: int = 640):
    """A byte-level BPE ``PreTrainedTokenizerFast`` whose merges are learnt from ``texts`` (the prompts
    a model will read), with the same chat markers and single-token action symbols as
    :func:`build_tiny_tokenizer`. Every string stays tokenisable (the 256 byte symbols are the base
    alphabet); words of the corpus become one or two tokens instead of one token per byte, which cuts
    the prompt of a navigation episode ~4x and hands a small decoder whole words to ground ("blue",
    "lamp") instead of letters. ``vocab_size`` counts the byte alphabet and the merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if not 256 < vocab_size <= 65536:
        raise ValueError(f"vocab_size must be in (256, 65536], got {vocab_size!r}")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(list(texts), trainer=trainer)
    return _with_chat_and_action_tokens(backend)


def tiny_text_config(vocab_size: int, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                     num_kv_heads: int = 2, intermediate_size: int = 128,
                     initializer_range: float = 0.02) -> Qwen2Config:
    """``initializer_range`` ~0.2 makes a random decoder sensitive to its context (tests need that:
    at 0.02 attention is nearly uniform and removing a turn barely moves the logits)."""
    return Qwen2Config(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                       num_hidden_layers=num_layers, num_attention_heads=num_heads,
                       num_key_value_heads=num_kv_heads, max_position_embeddings=32768, rope_theta=1e6,
                       tie_word_embeddings=False, use_sliding_window=False,
                       initializer_range=initializer_range)


def tiny_vision_config(image_size: int = 384, patch_size: int = 14, hidden_size: int = 32, num_layers: int = 1,
                       num_heads: int = 2, intermediate_size: int = 64) -> SiglipVisionConfig:
    return SiglipVisionConfig(image_size=image_size, patch_size=patch_size, hidden_size=hidden_size,
                              num_hidden_layers=num_layers, num_attention_heads=num_heads,
                              intermediate_size=intermediate_size, vision_use_head=False)


def build_tiny_model(tokenizer=None, seed: int = 0, image_size: int = 384, text_kwargs: dict | None = None,
                     vision_kwargs: dict | None = None, dtype: torch.dtype = torch.float32,
                     vocab_size: int | None = None) -> StreamVLNModel:
    """A random model; ``image_size=384`` with patch 14 gives 27x27 patches -> 196 tokens/frame.
    ``vocab_size``: the decoder's vocabulary (default: the tokenizer's; larger for a published-size
    output layer, the extra rows are never produced by the tokenizer). Built on torch's current
    default device (``with torch.device('cuda'):`` builds it on the GPU)."""
    tokenizer = tokenizer if tokenizer is not None else build_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):  # seeded, without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = StreamVLNModel(tiny_text_config(vocab_size or len(tokenizer), **(text_kwargs or {})),
                               tiny_vision_config(image_size=image_size, **(vision_kwargs or {})),
                               VisionLanguageConfig())
    return model.to_dtype(dtype).eval()
