"""Asymmetric action tokenizer (the fast side of RDP).

Encoder: the action chunk only (B, H, Da) -> strided 1-D convolutions (one stride-2 conv
per factor 2 of ``compression``) -> diagonal Gaussian latent (B, H / compression, Dz).

Decoder: at control step t it sees the latent slice z[t // compression], the contact
signal c_t (normalised wrench or tactile PCA embedding) and the step's phase
((t mod compression) / compression, t / H), and emits one action through a GRU cell:

    x_t = [z[t // c], c_t, phase_t]
    h_t = GRU(x_t, h_{t-1})            (h_{-1} = 0)
    a_t = W [h_t, x_t] + b

``step`` runs one tick in O(1) with the recurrent state passed explicitly; ``decode``
runs the whole chunk with the same weights (cuDNN/MKL GRU) and equals the repeated
``step`` within float rounding. Everything here works on normalised values; see
:class:`~policy.rdp.export.DecoderStepExport` for the raw-units wrapper that goes to ONNX.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import TokenizerConfig

PHASE_DIM = 2
LOGVAR_RANGE = (-30.0, 20.0)


def _groups(ch: int) -> int:
    for g in (8, 4, 2):
        if ch % g == 0:
            return g
    return 1


class AsymmetricTokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig, action_dim: int, contact_dim: int, horizon: int) -> None:
        super().__init__()
        if horizon % cfg.compression:
            raise ValueError(f"horizon {horizon} is not a multiple of tokenizer.compression {cfg.compression}")
        self.cfg, self.action_dim, self.contact_dim, self.horizon = cfg, action_dim, contact_dim, horizon
        self.compression = cfg.compression
        self.latent_steps = horizon // cfg.compression
        k, ch = cfg.kernel_size, cfg.enc_channels
        layers: list[nn.Module] = [nn.Conv1d(action_dim, ch, k, padding=k // 2), nn.GroupNorm(_groups(ch), ch), nn.Mish()]
        for _ in range(int(math.log2(cfg.compression))):
            layers += [nn.Conv1d(ch, ch, k, stride=2, padding=k // 2), nn.GroupNorm(_groups(ch), ch), nn.Mish()]
        layers.append(nn.Conv1d(ch, 2 * cfg.latent_dim, 1))
        self.encoder = nn.Sequential(*layers)
        self.dec_in = cfg.latent_dim + contact_dim + PHASE_DIM
        self.gru = nn.GRU(self.dec_in, cfg.hidden, batch_first=True)
        self.head = nn.Linear(cfg.hidden + self.dec_in, action_dim)

    # ------------------------------------------------------------------ encoder
    def encode(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, Da) normalised relative actions -> mean, logvar (B, H/c, Dz)."""
        if action.shape[1:] != (self.horizon, self.action_dim):
            raise ValueError(f"tokenizer.encode: actions of shape {tuple(action.shape[1:])}, "
                             f"expected ({self.horizon}, {self.action_dim})")
        out = self.encoder(action.transpose(1, 2)).transpose(1, 2)
        mean, logvar = out.chunk(2, dim=-1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    # ------------------------------------------------------------------ decoder
    def phase(self, t: torch.Tensor) -> torch.Tensor:
        """Step index t (..., 1) as float -> phase features (..., 2)."""
        c = float(self.compression)
        frac = t / c - torch.floor(t / c)
        return torch.cat([frac, t / float(self.horizon)], dim=-1)

    def decoder_inputs(self, latent: torch.Tensor, contact: torch.Tensor) -> torch.Tensor:
        b, h = contact.shape[0], contact.shape[1]
        z = latent.repeat_interleave(self.compression, dim=1)[:, :h]
        t = torch.arange(h, dtype=contact.dtype, device=contact.device).view(1, h, 1).expand(b, h, 1)
        return torch.cat([z, contact, self.phase(t)], dim=-1)

    def decode(self, latent: torch.Tensor, contact: torch.Tensor) -> torch.Tensor:
        """Whole-sequence decode: latent (B, H/c, Dz), contact (B, H', Dc) -> actions (B, H', Da), H' <= H."""
        x = self.decoder_inputs(latent, contact)
        h, _ = self.gru(x)
        return self.head(torch.cat([h, x], dim=-1))

    def initial_state(self, batch: int = 1, device=None) -> torch.Tensor:
        return torch.zeros(batch, self.cfg.hidden, device=device)

    def step(self, latent_t: torch.Tensor, contact_t: torch.Tensor, t: torch.Tensor,
             state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One control tick, O(1): latent slice (B, Dz), contact (B, Dc), step index (B, 1)
        float, GRU state (B, hidden) -> action (B, Da), next state (B, hidden)."""
        x = torch.cat([latent_t, contact_t, self.phase(t)], dim=-1)
        if torch.onnx.is_in_onnx_export():  # one ONNX GRU node (fewer kernels per tick than the gates spelled out)
            h = self.gru(x[:, None], state[None])[1][0]
        else:  # one fused ATen op
            h = torch.gru_cell(x, state, self.gru.weight_ih_l0, self.gru.weight_hh_l0,
                               self.gru.bias_ih_l0, self.gru.bias_hh_l0)
        return self.head(torch.cat([h, x], dim=-1)), h

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict, generator: torch.Generator | None = None, **_) -> tuple[torch.Tensor, dict]:
        """Training entry (goes through DDP when wrapped): batch with "action", "contact"."""
        return self.loss(batch["action"], batch["contact"], generator)

    def loss(self, action: torch.Tensor, contact: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """L1 reconstruction + kl_weight * KL(q(z|a) || N(0, I)) (KL averaged per latent element)."""
        mean, logvar = self.encode(action)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        z = mean + eps * torch.exp(0.5 * logvar)
        if self.training and self.cfg.contact_noise > 0:
            noise = torch.randn(contact.shape, generator=generator, dtype=contact.dtype).to(contact.device)
            contact = contact + self.cfg.contact_noise * noise
        if self.training and self.cfg.contact_offset_noise > 0:
            shape = (contact.shape[0], 1, contact.shape[2])
            offset = torch.randn(shape, generator=generator, dtype=contact.dtype).to(contact.device)
            contact = contact + self.cfg.contact_offset_noise * offset
        recon = self.decode(z, contact)
        l1 = (recon - action).abs().mean()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        total = l1 + self.cfg.kl_weight * kl
        return total, {"l1": float(l1.detach()), "kl": float(kl.detach())}
