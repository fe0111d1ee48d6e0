"""Reactive Diffusion Policy: asymmetric tokenizer, latent diffusion, DP baseline."""
