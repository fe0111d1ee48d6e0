"""The slow side: observation encoder, 1-D conditional UNet (FiLM) and the diffusion wrapper
used both by the latent diffusion policy (target = tokenizer latents) and the Diffusion
Policy baseline (target = raw relative action chunks).

The noise schedule and the sampler are diffusers' ``DDIMScheduler`` (never re-implemented).
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .config import DiffusionConfig, ObsEncoderConfig, UNetConfig


# ----------------------------------------------------------------------------- image encoder

def _gn(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, ch // 16), ch)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = _gn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = _gn(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _gn(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.n1(self.conv1(x)))
        y = self.n2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet18GN(nn.Module):
    """ResNet-18 layout (2-2-2-2 basic blocks) with GroupNorm, trained from scratch.

    ``width`` = channels of the first stage (64 is torchvision's ResNet-18). Input (N, 3, H, W)
    float, output (N, out_dim) after global average pooling and a linear layer.
    """

    def __init__(self, width: int = 64, out_dim: int = 512) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), _gn(width), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], width
        for i, mult in enumerate((1, 2, 4, 8)):
            cout = width * mult
            blocks += [_BasicBlock(cin, cout, 1 if i == 0 else 2), _BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(x.mean(dim=(2, 3)))


class ObsEncoder(nn.Module):
    """Observations -> global conditioning vector.

    forward(images, proprio, contact):
      images  (B, n_cam, n_obs, 3, h, w) uint8 or float in [0, 255] (None when n_cam = 0)
      proprio (B, n_obs, Dp) normalised; contact (B, Ch, Dc) normalised (ignored unless use_contact)
    -> (B, cond_dim) = [per camera and step image features, proprio, contact] flattened.
    One ResNet per camera, as in the published code.
    """

    def __init__(self, cfg: ObsEncoderConfig, n_cameras: int, n_obs: int, proprio_dim: int,
                 contact_dim: int, contact_history: int, image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.25, 0.25)) -> None:
        super().__init__()
        self.cfg, self.n_cameras, self.n_obs = cfg, n_cameras, n_obs
        self.image_nets = nn.ModuleList(ResNet18GN(cfg.image_width, cfg.image_feature_dim) for _ in range(n_cameras))
        self.register_buffer("image_mean", torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1))
        self.cond_dim = n_cameras * n_obs * cfg.image_feature_dim + n_obs * proprio_dim
        if cfg.use_contact:
            self.cond_dim += contact_history * contact_dim

    def crop(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 3, h, w): random place per image in training, centre otherwise."""
        r = self.cfg.crop_ratio
        if r >= 1.0:
            return x
        n, hh, ww = x.shape[0], int(x.shape[2]), int(x.shape[3])  # image size is static in exports
        ch, cw = max(8, int(round(hh * r))), max(8, int(round(ww * r)))
        if not self.training:
            oy, ox = (hh - ch) // 2, (ww - cw) // 2
            return x[:, :, oy:oy + ch, ox:ox + cw]
        oy = torch.randint(0, hh - ch + 1, (n,), generator=generator).to(x.device)
        ox = torch.randint(0, ww - cw + 1, (n,), generator=generator).to(x.device)
        rows = (oy[:, None] + torch.arange(ch, device=x.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(cw, device=x.device))[:, None, None, :]
        idx_n = torch.arange(n, device=x.device)[:, None, None, None]
        idx_c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        return x[idx_n, idx_c, rows, cols]

    def forward(self, images: torch.Tensor | None, proprio: torch.Tensor, contact: torch.Tensor | None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        b = proprio.shape[0]
        parts = []
        for c, net in enumerate(self.image_nets):
            x = images[:, c].reshape((-1,) + tuple(images.shape[-3:])).float() / 255.0
            x = self.crop(x, generator)
            x = (x - self.image_mean) / self.image_std
            parts.append(net(x).reshape(b, -1))
        parts.append(proprio.reshape(b, -1))
        if self.cfg.use_contact:
            parts.append(contact.reshape(b, -1))
        return torch.cat(parts, dim=-1)


# ----------------------------------------------------------------------------- UNet

class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freq = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / (half - 1)))
        arg = t.float()[:, None] * freq[None, :]
        return torch.cat([arg.sin(), arg.cos()], dim=-1)


class Conv1dBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, groups: int) -> None:
        super().__init__(nn.Conv1d(cin, cout, k, padding=k // 2), nn.GroupNorm(groups, cout), nn.Mish())


class CondResBlock1D(nn.Module):
    """Two conv blocks; FiLM (per-channel scale and bias from the conditioning) in between."""

    def __init__(self, cin: int, cout: int, cond_dim: int, k: int, groups: int) -> None:
        super().__init__()
        self.b1 = Conv1dBlock(cin, cout, k, groups)
        self.b2 = Conv1dBlock(cout, cout, k, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * cout))
        self.res = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()
        self.cout = cout

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        y = self.b1(x)
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        y = scale * y + bias
        return self.b2(y) + self.res(x)


class ConditionalUnet1D(nn.Module):
    """Diffusion Policy's 1-D UNet: input (B, T, C), timestep (B,), global cond (B, G) -> (B, T, C).

    T must be divisible by 2 ** (len(down_dims) - 1).
    """

    def __init__(self, input_dim: int, global_cond_dim: int, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dims = [input_dim, *cfg.down_dims]
        d = cfg.step_embed_dim
        self.step_encoder = nn.Sequential(SinusoidalPosEmb(d), nn.Linear(d, 4 * d), nn.Mish(), nn.Linear(4 * d, d))
        cond_dim = d + global_cond_dim
        k, g = cfg.kernel_size, cfg.n_groups
        in_out = list(zip(dims[:-1], dims[1:]))
        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(in_out):
            last = i == len(in_out) - 1
            self.down.append(nn.ModuleList([
                CondResBlock1D(cin, cout, cond_dim, k, g), CondResBlock1D(cout, cout, cond_dim, k, g),
                nn.Conv1d(cout, cout, 3, 2, 1) if not last else nn.Identity()]))
        mid = dims[-1]
        self.mid = nn.ModuleList([CondResBlock1D(mid, mid, cond_dim, k, g), CondResBlock1D(mid, mid, cond_dim, k, g)])
        self.up = nn.ModuleList()
        for cin, cout in reversed(in_out[1:]):  # every up level undoes one down level
            self.up.append(nn.ModuleList([
                CondResBlock1D(cout * 2, cin, cond_dim, k, g), CondResBlock1D(cin, cin, cond_dim, k, g),
                nn.ConvTranspose1d(cin, cin, 4, 2, 1)]))
        start = cfg.down_dims[0]
        self.final = nn.Sequential(Conv1dBlock(start, start, k, g), nn.Conv1d(start, input_dim, 1))
        self.downsample_factor = 2 ** (len(cfg.down_dims) - 1)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, global_cond: torch.Tensor) -> torch.Tensor:
        x = sample.transpose(1, 2)
        if timestep.dim() == 0:
            timestep = timestep.expand(sample.shape[0])
        cond = torch.cat([self.step_encoder(timestep), global_cond], dim=-1)
        skips = []
        for r1, r2, down in self.down:
            x = r2(r1(x, cond), cond)
            skips.append(x)
            x = down(x)
        for m in self.mid:
            x = m(x, cond)
        for r1, r2, up in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = r2(r1(x, cond), cond)
            x = up(x)
        return self.final(x).transpose(1, 2)


# ----------------------------------------------------------------------------- diffusion wrapper

def make_scheduler(cfg: DiffusionConfig):
    """diffusers DDIM with the configured schedule (the same object trains and samples)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=cfg.clip_sample > 0,
                         clip_sample_range=cfg.clip_sample if cfg.clip_sample > 0 else 1.0,
                         set_alpha_to_one=True, steps_offset=0)


class DiffusionModel(nn.Module):
    """Observation encoder + UNet over a target sequence (B, T, C) (latents or actions)."""

    def __init__(self, obs_encoder: ObsEncoder, target_len: int, target_dim: int,
                 unet_cfg: UNetConfig, diffusion_cfg: DiffusionConfig) -> None:
        super().__init__()
        if target_len % (2 ** (len(unet_cfg.down_dims) - 1)):
            raise ValueError(f"target length {target_len} is not divisible by 2**(len(unet.down_dims)-1) = "
                             f"{2 ** (len(unet_cfg.down_dims) - 1)}; use fewer down_dims or a longer horizon")
        self.obs_encoder = obs_encoder
        self.unet = ConditionalUnet1D(target_dim, obs_encoder.cond_dim, unet_cfg)
        self.target_len, self.target_dim = target_len, target_dim
        self.diffusion_cfg = diffusion_cfg
        self.scheduler = make_scheduler(diffusion_cfg)

    def encode_obs(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.obs_encoder(batch.get("obs_images"), batch["obs_proprio"], batch["obs_contact"], generator)

    def forward(self, batch: dict, generator: torch.Generator | None = None,
                target: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """Training entry (goes through DDP when wrapped): diffusion loss on ``target``
        (default: the batch's normalised action chunk, i.e. the DP baseline)."""
        target = batch["action"] if target is None else target
        loss = self.loss(self.encode_obs(batch, generator), target, generator)
        return loss, {"mse": float(loss.detach())}

    def loss(self, cond: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b = target.shape[0]
        noise = torch.randn(target.shape, generator=generator).to(target.device)
        t = torch.randint(0, self.diffusion_cfg.num_train_timesteps, (b,), generator=generator).to(target.device)
        noisy = self.scheduler.add_noise(target, noise, t)
        pred = self.unet(noisy, t, cond)
        if self.diffusion_cfg.prediction_type == "epsilon":
            goal = noise
        elif self.diffusion_cfg.prediction_type == "sample":
            goal = target
        else:
            goal = self.scheduler.get_velocity(target, noise, t)
        return F.mse_loss(pred, goal)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None,
               num_inference_steps: int | None = None) -> torch.Tensor:
        """DDIM sampling -> normalised target (B, T, C)."""
        sched = make_scheduler(self.diffusion_cfg)
        sched.set_timesteps(num_inference_steps or self.diffusion_cfg.num_inference_steps)
        x = torch.randn((cond.shape[0], self.target_len, self.target_dim), generator=generator).to(cond.device)
        for t in sched.timesteps:
            eps = self.unet(x, t.to(cond.device).expand(cond.shape[0]), cond)
            x = sched.step(eps, t, x).prev_sample
        return x
