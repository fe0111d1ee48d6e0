"""Shared tiny models for the StreamVLN tests (random weights, built in code, nothing downloaded)."""
from __future__ import annotations

import pytest
import torch

from policy.streamvln.tiny import build_tiny_model, build_tiny_tokenizer

# Larger random weights than the 0.02 default, so that outputs depend strongly on the context and
# the exactness tests below discriminate (at 0.02 dropping a whole turn moves logits by ~1e-5).
SENSITIVE = {"initializer_range": 0.2}


@pytest.fixture(autouse=True)
def _one_thread():
    """The machine is shared and the models are tiny: one thread, restored afterwards so that
    other folders' tests in the same run are unaffected."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def small_model(tokenizer):
    """56 px images: 4x4 patches -> 2x2 = 4 tokens per frame (fast agent tests)."""
    return build_tiny_model(tokenizer, seed=0, image_size=56, text_kwargs=SENSITIVE)


@pytest.fixture(scope="session")
def full_grid_model(tokenizer):
    """384 px / patch 14: 27x27 patches -> 14x14 = 196 tokens per frame, as the real model."""
    return build_tiny_model(tokenizer, seed=1, image_size=384, text_kwargs=SENSITIVE)
