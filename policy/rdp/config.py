"""Typed configuration for the RDP models and their training, validated at construction.

Every class is a dataclass whose ``__post_init__`` checks each field and raises
``ValueError`` naming the field and the allowed range. ``to_dict``/``from_dict`` make the
JSON stored in a checkpoint's ``config.json``; unknown keys are an error, not ignored.

Two size presets (see :func:`preset`):

* ``sim`` (default): small enough for a chunk in well under 60 ms on one CPU (images
  96x128, UNet 64/128/256, image encoder base width 32).
* ``published``: the sizes of the published RDP code (images 240x320, UNet 512/1024/2048,
  ResNet-18 width 64, chunk 32 steps, latent 8 steps, GRU hidden 32).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MODEL_TYPES = ("rdp_tokenizer", "rdp_ldp", "dp")
CONTACT_KINDS = ("wrench", "tactile")


def _fail(obj: Any, name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{type(obj).__name__}.{name} = {value!r}: must be {allowed}")


def _int_range(obj: Any, name: str, lo: int, hi: int | None = None) -> None:
    v = getattr(obj, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        _fail(obj, name, v, f"an integer in [{lo}, {hi if hi is not None else 'inf'}]")


def _float_range(obj: Any, name: str, lo: float, hi: float, lo_open: bool = False) -> None:
    v = getattr(obj, name)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v <= hi and (v > lo if lo_open else v >= lo)
    if not ok:
        _fail(obj, name, v, f"a number in {'(' if lo_open else '['}{lo}, {hi}]")
    setattr(obj, name, float(v))


class _Base:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        if not isinstance(d, dict):
            raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(names)}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            sub = _SUBCONFIGS.get((cls.__name__, f.name))
            if sub is not None:
                v = sub.from_dict(v)
            elif isinstance(v, list):
                v = tuple(v)
            kwargs[f.name] = v
        return cls(**kwargs)


@dataclass
class DataConfig(_Base):
    """How training samples are cut from a dataset.

    horizon: action chunk length in control steps (dataset frames).
    n_obs_steps: observation history length; obs_stride: frames between history steps.
    contact: per-step contact signal for the decoder, "wrench" (A*6) or "tactile"
      (PCA of marker offsets, ``tactile_pca_dim`` per arm, fitted on the dataset).
    contact_history: contact steps the slow policy sees (ending at the current frame).
    image_size: (height, width) the image encoder receives; frames are resized on load.
    cameras: camera names to use (empty = every camera in the dataset).
    val_fraction: share of episodes held out for validation (at least one when > 0).
    """

    horizon: int = 32
    n_obs_steps: int = 2
    obs_stride: int = 1
    contact: str = "wrench"
    tactile_pca_dim: int = 15
    contact_history: int = 2
    image_size: tuple = (96, 128)
    cameras: tuple = ()
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        _int_range(self, "horizon", 1, 4096)
        _int_range(self, "n_obs_steps", 1, 16)
        _int_range(self, "obs_stride", 1, 1000)
        if self.contact not in CONTACT_KINDS:
            _fail(self, "contact", self.contact, f"one of {CONTACT_KINDS}")
        _int_range(self, "tactile_pca_dim", 1, 256)
        _int_range(self, "contact_history", 1, 1000)
        self.image_size = tuple(self.image_size)
        if len(self.image_size) != 2 or not all(isinstance(v, int) and 16 <= v <= 2048 for v in self.image_size):
            _fail(self, "image_size", self.image_size, "(height, width), each an integer in [16, 2048]")
        self.cameras = tuple(self.cameras)
        if not all(isinstance(c, str) and c for c in self.cameras):
            _fail(self, "cameras", self.cameras, "a list of camera names")
        _float_range(self, "val_fraction", 0.0, 0.9)


@dataclass
class TokenizerConfig(_Base):
    """Asymmetric tokenizer: conv encoder over actions, GRU decoder fed latent + contact.

    compression: time compression of the latent (power of two; one stride-2 conv each).
    latent_dim: channels of the latent; hidden: GRU hidden size; enc_channels: encoder width.
    kl_weight: weight of the KL term next to the L1 reconstruction.
    contact_noise: std of Gaussian noise added to the decoder's (normalised) contact input in
    training. Without it the decoder reads the path off the contact sequence (in a
    demonstration the force trace tells where along the wipe the tool is): served with a live
    force that differs from the demonstration's, it left the path (the oracle replay of the
    demonstrations' own latents wiped 1 of 20 episodes). The noise makes the latent carry the
    path and leaves the contact the correction.
    contact_offset_noise: std of one Gaussian offset per training chunk added to every step of
    the decoder's (normalised) contact input: the absolute contact level of a chunk then says
    nothing the decoder can trust, a change of contact within the chunk still does (what a
    reactive correction needs). Per-step noise alone (``contact_noise``) hides both.
    """

    latent_dim: int = 4
    compression: int = 4
    enc_channels: int = 64
    kernel_size: int = 5
    hidden: int = 32
    kl_weight: float = 1e-6
    contact_noise: float = 0.0
    contact_offset_noise: float = 0.0

    def __post_init__(self) -> None:
        _int_range(self, "latent_dim", 1, 256)
        _int_range(self, "compression", 1, 64)
        if self.compression & (self.compression - 1):
            _fail(self, "compression", self.compression, "a power of two in [1, 64]")
        _int_range(self, "enc_channels", 4, 4096)
        _int_range(self, "kernel_size", 1, 31)
        if self.kernel_size % 2 == 0:
            _fail(self, "kernel_size", self.kernel_size, "an odd integer in [1, 31]")
        _int_range(self, "hidden", 1, 4096)
        _float_range(self, "kl_weight", 0.0, 1.0)
        _float_range(self, "contact_noise", 0.0, 10.0)
        _float_range(self, "contact_offset_noise", 0.0, 10.0)


@dataclass
class UNetConfig(_Base):
    """1-D conditional UNet with FiLM (Diffusion Policy's architecture)."""

    down_dims: tuple = (64, 128, 256)
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 64

    def __post_init__(self) -> None:
        self.down_dims = tuple(self.down_dims)
        if not self.down_dims or not all(isinstance(d, int) and 8 <= d <= 8192 for d in self.down_dims):
            _fail(self, "down_dims", self.down_dims, "a non-empty list of integers in [8, 8192]")
        _int_range(self, "kernel_size", 1, 31)
        if self.kernel_size % 2 == 0:
            _fail(self, "kernel_size", self.kernel_size, "an odd integer in [1, 31]")
        _int_range(self, "n_groups", 1, 64)
        bad = [d for d in self.down_dims if d % self.n_groups]
        if bad:
            _fail(self, "n_groups", self.n_groups, f"a divisor of every down_dims entry (not of {bad})")
        _int_range(self, "step_embed_dim", 4, 4096)
        if self.step_embed_dim % 2:
            _fail(self, "step_embed_dim", self.step_embed_dim, "an even integer in [4, 4096]")


@dataclass
class ObsEncoderConfig(_Base):
    """Observation encoder: ResNet-18-like (GroupNorm) per camera, proprio, contact history.

    image_width: channels of the first ResNet stage (64 = ResNet-18); image_feature_dim:
    output per camera per step. use_contact: feed the contact history (LDP: yes; the DP
    baseline: no by default, yes for the "DP + tactile/force embedding" variant).
    crop_ratio: training crops each image to this share of its height and width at a random
    place (Diffusion Policy's augmentation); evaluation and export take the centre crop.
    """

    image_width: int = 32
    image_feature_dim: int = 64
    use_contact: bool = True
    crop_ratio: float = 0.95

    def __post_init__(self) -> None:
        _float_range(self, "crop_ratio", 0.5, 1.0)
        _int_range(self, "image_width", 4, 256)
        if self.image_width % 4:
            _fail(self, "image_width", self.image_width, "a multiple of 4 in [4, 256]")
        _int_range(self, "image_feature_dim", 4, 4096)
        if not isinstance(self.use_contact, bool):
            _fail(self, "use_contact", self.use_contact, "true or false")


@dataclass
class DiffusionConfig(_Base):
    """Noise schedule and sampling (diffusers DDIM), EMA."""

    num_train_timesteps: int = 100
    num_inference_steps: int = 8
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"
    clip_sample: float = 5.0  # clip the predicted clean sample to +-this (normalised units); 0 = off
    ema_power: float = 0.75
    ema_max_decay: float = 0.9999

    def __post_init__(self) -> None:
        _int_range(self, "num_train_timesteps", 2, 10000)
        _int_range(self, "num_inference_steps", 1, self.num_train_timesteps)
        allowed = ("squaredcos_cap_v2", "linear", "scaled_linear")
        if self.beta_schedule not in allowed:
            _fail(self, "beta_schedule", self.beta_schedule, f"one of {allowed}")
        if self.prediction_type not in ("epsilon", "sample", "v_prediction"):
            _fail(self, "prediction_type", self.prediction_type, "one of ('epsilon', 'sample', 'v_prediction')")
        _float_range(self, "clip_sample", 0.0, 1e6)
        _float_range(self, "ema_power", 0.0, 10.0, lo_open=True)
        _float_range(self, "ema_max_decay", 0.0, 1.0)


@dataclass
class TrainConfig(_Base):
    """Optimisation settings shared by the three trainers."""

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-6
    warmup_steps: int = 500
    grad_clip: float = 1.0
    seed: int = 0
    num_workers: int = 0
    checkpoint_every: int = 1  # epochs
    # Early stopping: stop when the validation loss has not improved for this many epochs and
    # keep the best epoch's weights (0 = off; needs held-out episodes, data.val_fraction > 0).
    patience: int = 0
    mixed_precision: str = "no"  # "no" | "fp16" | "bf16" (Accelerate autocast; weights stay fp32)

    def __post_init__(self) -> None:
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            _fail(self, "mixed_precision", self.mixed_precision, "one of ('no', 'fp16', 'bf16')")
        _int_range(self, "epochs", 1, 1_000_000)
        _int_range(self, "batch_size", 1, 1_000_000)
        _float_range(self, "lr", 0.0, 10.0, lo_open=True)
        _float_range(self, "weight_decay", 0.0, 10.0)
        _int_range(self, "warmup_steps", 0, 10_000_000)
        _float_range(self, "grad_clip", 0.0, 1e6)
        _int_range(self, "seed", 0, 2**63 - 1)
        _int_range(self, "num_workers", 0, 256)
        _int_range(self, "checkpoint_every", 1, 1_000_000)
        _int_range(self, "patience", 0, 1_000_000)


@dataclass
class PolicyConfig(_Base):
    """Everything that defines a model (stored in the checkpoint's config.json).

    ``model_type``: "rdp_tokenizer", "rdp_ldp" or "dp". ``shapes`` is filled from the dataset
    when training starts (num_arms, action_dim, contact_raw_dim, contact_dim, proprio_dim,
    cameras, fps, tactile markers) and checked against any dataset used later.
    """

    model_type: str = "rdp_tokenizer"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    obs: ObsEncoderConfig = field(default_factory=ObsEncoderConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    shapes: dict = field(default_factory=dict)
    format_version: int = 1

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            _fail(self, "model_type", self.model_type, f"one of {MODEL_TYPES}")
        if self.model_type == "rdp_ldp" or self.model_type == "rdp_tokenizer":
            c = self.tokenizer.compression
            if self.data.horizon % c:
                _fail(self, "data.horizon", self.data.horizon, f"a multiple of tokenizer.compression ({c})")
        if self.model_type == "dp":
            levels = len(self.unet.down_dims) - 1
            if self.data.horizon % (2 ** levels):
                _fail(self, "data.horizon", self.data.horizon,
                      f"a multiple of 2**(len(unet.down_dims)-1) = {2 ** levels} for the DP baseline")
        if not isinstance(self.shapes, dict):
            _fail(self, "shapes", self.shapes, "a JSON object")

    @property
    def latent_steps(self) -> int:
        return self.data.horizon // self.tokenizer.compression


_SUBCONFIGS = {
    ("PolicyConfig", "data"): DataConfig,
    ("PolicyConfig", "tokenizer"): TokenizerConfig,
    ("PolicyConfig", "unet"): UNetConfig,
    ("PolicyConfig", "obs"): ObsEncoderConfig,
    ("PolicyConfig", "diffusion"): DiffusionConfig,
    ("PolicyConfig", "train"): TrainConfig,
}


def preset(name: str, model_type: str) -> PolicyConfig:
    """``sim`` (small, CPU-friendly; default) or ``published`` (the sizes of the RDP code)."""
    if name == "sim":
        cfg = PolicyConfig(model_type=model_type)
    elif name == "published":
        cfg = PolicyConfig(
            model_type=model_type,
            data=DataConfig(horizon=32, n_obs_steps=2, image_size=(240, 320)),
            tokenizer=TokenizerConfig(latent_dim=4, compression=4, hidden=32),
            unet=UNetConfig(down_dims=(512, 1024, 2048), kernel_size=5, n_groups=8, step_embed_dim=128),
            obs=ObsEncoderConfig(image_width=64, image_feature_dim=512),
        )
    else:
        raise ValueError(f"preset = {name!r}: must be one of ('sim', 'published')")
    if model_type == "dp":
        cfg.obs.use_contact = False
        if name == "sim":
            # The small UNet's first level keeps down_dims[0] = 32 channels at half the time
            # resolution: the white noise of an A*9-channel action chunk (18 for two arms) does
            # not fit through it, so an epsilon-predicting DP cannot tell noise from chunk (lift:
            # epsilon error 0.23 at every noise level, 0/20 episodes). Predicting the clean
            # chunk passes only the smooth trajectory (lift 200/200; docs/results.md). The
            # latent diffusion policy's 4-channel latent has no such bottleneck.
            cfg.diffusion.prediction_type = "sample"
    return cfg
