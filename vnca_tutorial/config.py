"""Model configurations: one dataclass per variant, and the named presets.

Each preset is either the paper's scale (appendix A of Palm et al. 2022) or a CPU scale that trains
visibly in minutes on two cores. Explained in chapter 2 (book/02_doubling.md) and chapter 10
(book/10_scaling.md).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .checks import check_beta

LIKELIHOODS = ("bernoulli", "dlogistic")


def _check_common(cfg) -> None:
    """Validate the fields every variant shares; raise ValueError naming the bad field."""
    if cfg.likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {cfg.likelihood!r}")
    expected_channels = 1 if cfg.likelihood == "bernoulli" else 3
    if cfg.image_channels != expected_channels:
        raise ValueError(
            f"likelihood {cfg.likelihood!r} models {expected_channels}-channel images, "
            f"but image_channels={cfg.image_channels}")
    for field in ("z_dim", "hidden", "batch_size", "image_size", "n_mix", "encoder_channels"):
        if not isinstance(getattr(cfg, field), int) or getattr(cfg, field) < 1:
            raise ValueError(f"{field} must be a positive integer, got {getattr(cfg, field)!r}")
    if not isinstance(cfg.kl_warmup, int) or cfg.kl_warmup < 0:
        raise ValueError(f"kl_warmup is a number of updates and must be an integer >= 0, got {cfg.kl_warmup!r}")
    check_beta(cfg.beta)
    if not isinstance(cfg.hflip, bool):
        raise ValueError(f"hflip must be True or False, got {cfg.hflip!r}")
    if not isinstance(cfg.invert, bool):
        raise ValueError(f"invert must be True or False, got {cfg.invert!r}")
    if cfg.invert and (cfg.dataset != "folder" or cfg.likelihood != "bernoulli"):
        raise ValueError(f"invert=True turns a folder's grey levels over before they are thresholded to 0/1: "
                         f"it needs dataset='folder' and likelihood='bernoulli', got {cfg.dataset!r} and "
                         f"{cfg.likelihood!r}")
    if not (math.isfinite(cfg.lr) and 0 < cfg.lr <= 1):
        raise ValueError(f"lr is Adam's learning rate and must lie in (0, 1], got {cfg.lr} (the presets use "
                         f"1e-4 to 1e-3)")
    if not (math.isfinite(cfg.grad_clip) and cfg.grad_clip > 0):
        raise ValueError(f"grad_clip is the largest gradient norm and must be a finite number > 0, got "
                         f"{cfg.grad_clip}")
    if not isinstance(cfg.n_updates, int) or cfg.n_updates < 1:
        raise ValueError(f"n_updates must be a positive integer, got {cfg.n_updates!r}")
    if getattr(cfg, "n_blocks", 0) < 0:
        raise ValueError(f"n_blocks must be >= 0, got {cfg.n_blocks}")
    if cfg.z_dim < cfg.n_likelihood_channels:
        raise ValueError(f"z_dim={cfg.z_dim} is too small: the likelihood reads "
                         f"{cfg.n_likelihood_channels} cell channels")


@dataclass(frozen=True)
class BaseConfig:
    """The fields every model variant shares (DoublingConfig, NonDoublingConfig and BaselineConfig add theirs)."""
    name: str = "custom"             # preset name, recorded in checkpoints
    dataset: str = "binarized_mnist"  # see vnca_tutorial.data.load_dataset
    image_size: int = 32             # H = W of the modelled image
    image_channels: int = 1          # 1 for binary images, 3 for RGB
    likelihood: str = "bernoulli"    # p(x|z): "bernoulli" or "dlogistic" (discretized logistic mixture)
    n_mix: int = 1                   # L, number of logistic mixture components
    z_dim: int = 256                 # |z|, also the number of channels of every cell
    hidden: int = 256                # width of the update network u
    beta: float = 1.0                # weight of the KL term in the ELBO
    batch_size: int = 32
    lr: float = 1e-4                 # Adam learning rate
    grad_clip: float = 10.0          # gradient-norm clipping
    n_updates: int = 100_000         # training length used by the paper
    encoder_channels: int = 32       # channels of the encoder's first conv; doubled by each stride-2 conv
    bf16: bool = False               # bf16 autocast for the update network (state stays float32)
    kl_warmup: int = 0               # > 0: the KL weight rises linearly from 0 to beta over this many
                                     # updates (not in the paper; chapter 8)
    hflip: bool = False              # mirror each training image left-right with probability 1/2 (data
                                     # augmentation, not in the paper; chapter 10)
    invert: bool = False             # dataset="folder", binary: 1 where the image is dark (strokes on
                                     # light paper), not where it is light (chapter 13)

    @property
    def n_likelihood_channels(self) -> int:
        """How many cell channels parameterise p(x|z): 1 (logits) or 10 L (mixture)."""
        return self.image_channels if self.likelihood == "bernoulli" else 10 * self.n_mix

    def beta_at(self, update: int) -> float:
        """The KL weight of training update ``update`` (0-based): beta, ramped up over kl_warmup updates."""
        if self.kl_warmup <= 0:
            return self.beta
        return self.beta * min(1.0, (update + 1) / self.kl_warmup)

    def replace(self, **changes):
        """A copy with some fields changed (the config is frozen)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DoublingConfig(BaseConfig):
    """The doubling VNCA (paper section 2): 2x2 seed, K doublings, M NCA steps per stage."""
    n_blocks: int = 4                # residual blocks of 1x1 convs in u
    n_doublings: int = 4             # K
    steps_per_stage: int = 8         # M: NCA steps before each doubling and after the last
    checkpointing: bool = False      # recompute NCA steps in the backward pass to save memory

    def __post_init__(self) -> None:
        _check_common(self)
        if self.n_doublings < 0 or self.steps_per_stage < 1:
            raise ValueError(f"need n_doublings (K) >= 0 and steps_per_stage (M) >= 1, got "
                             f"K={self.n_doublings}, M={self.steps_per_stage}")
        if self.image_size != 2 * 2 ** self.n_doublings:
            raise ValueError(
                f"a doubling decoder with K={self.n_doublings} doublings grows a 2x2 seed to "
                f"{2 * 2 ** self.n_doublings}x{2 * 2 ** self.n_doublings}, not "
                f"{self.image_size}x{self.image_size}; choose image_size = 2 * 2**K")

    @property
    def n_steps(self) -> int:
        """M (K + 1): the total number of NCA steps."""
        return self.steps_per_stage * (self.n_doublings + 1)


@dataclass(frozen=True)
class NonDoublingConfig(BaseConfig):
    """The non-doubling VNCA (paper section 3.3): z seeds every cell; T steps; pool + damage training."""
    n_blocks: int = 0                # 0: u is 3x3 conv -> ELU -> 1x1 conv, as in the paper
    min_steps: int = 32              # T is drawn uniformly from [min_steps, max_steps] in training
    max_steps: int = 64
    pool_size: int = 1024            # P, final states kept for pool training (appendix A.3)
    pool_fraction: float = 0.5       # share of each batch drawn from the pool
    damage_fraction: float = 0.5     # share of the pool samples that are damaged
    p_update: float = 1.0            # probability that a cell updates on a step (reference MNIST: 0.5)
    state_bound: float = 0.0         # > 0: pool training penalises |state| beyond it (not in the paper)
    pool_extra_steps: int = 0        # > 0: pool states first run U{0..this} steps without gradient, so
                                     # the loss sees older states (not in the paper; chapter 8)
    stationarity: float = 0.0        # > 0: pool training penalises the change one more step would make
                                     # to a pool state, so that attractors become fixed points (not in the
                                     # paper; chapter 8)
    regrow_fraction: float = 0.0     # > 0: this share of each batch is damaged again after its T steps,
                                     # inside the graph, and run T more steps; the regrown state's
                                     # log p(x|state) joins the loss (not in the paper; chapter 8)
    checkpointing: bool = False

    def __post_init__(self) -> None:
        _check_common(self)
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(f"need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}")
        for f in ("pool_fraction", "damage_fraction", "regrow_fraction"):
            if not 0.0 <= getattr(self, f) <= 1.0:
                raise ValueError(f"{f} must lie in [0, 1], got {getattr(self, f)}")
        if self.pool_size < self.batch_size:
            raise ValueError(f"pool_size ({self.pool_size}) must hold at least one batch "
                             f"(batch_size = {self.batch_size} states): raise pool_size or lower batch_size")
        if not isinstance(self.pool_extra_steps, int) or self.pool_extra_steps < 0:
            raise ValueError(f"pool_extra_steps must be an integer >= 0, got {self.pool_extra_steps!r}")
        if not (0.0 <= self.stationarity < float("inf")):
            raise ValueError(f"stationarity must be a finite weight >= 0 (0 turns the penalty off), "
                             f"got {self.stationarity}")
        if not self.state_bound >= 0.0:
            raise ValueError(f"state_bound must be >= 0 (0 turns the penalty off), got {self.state_bound}")
        if not 0.0 < self.p_update <= 1.0:
            raise ValueError(f"p_update is the probability that a cell updates on a step and must lie "
                             f"in (0, 1], got {self.p_update}")


@dataclass(frozen=True)
class BaselineConfig(BaseConfig):
    """The deep convolutional VAE baseline of appendix A.6: same encoder, transposed-conv decoder."""

    def __post_init__(self) -> None:
        _check_common(self)
        if self.image_size % 16:
            raise ValueError(f"the conv VAE needs image_size divisible by 16, got {self.image_size}")


ModelConfig = DoublingConfig | NonDoublingConfig | BaselineConfig

_MNIST = dict(dataset="binarized_mnist", image_size=32, image_channels=1, likelihood="bernoulli")
_NOTO = dict(dataset="noto_emoji", image_size=64, image_channels=3, likelihood="dlogistic", n_mix=1)
_CELEBA = dict(dataset="celeba", image_channels=3, likelihood="dlogistic", n_mix=1)

PRESETS: dict[str, ModelConfig] = {
    # --- doubling VNCA, paper scale (appendix A) ---
    "mnist_doubling": DoublingConfig(name="mnist_doubling", **_MNIST),
    "celeba_doubling": DoublingConfig(name="celeba_doubling", **_CELEBA, image_size=64, n_doublings=5),
    "celeba_doubling_beta100": DoublingConfig(name="celeba_doubling_beta100", **_CELEBA, image_size=64,
                                              n_doublings=5, beta=100.0),
    "noto_doubling": DoublingConfig(name="noto_doubling", **_NOTO, n_doublings=5),
    # --- non-doubling VNCA, paper scale ---
    # the reference code's settings (github.com/rasmusbergpalm/vnca): per-cell updates with probability
    # p_update (0.5 for MNIST, 1 for CelebA) and gradient-norm clipping at 1. Deviation: the reference
    # damages 14x14 squares on MNIST; the package damages H/2 x W/2 (16x16) on the 32x32 grid.
    "mnist_nondoubling": NonDoublingConfig(name="mnist_nondoubling", **_MNIST, z_dim=128, hidden=128,
                                           batch_size=128, p_update=0.5, grad_clip=1.0),
    "celeba_nondoubling": NonDoublingConfig(name="celeba_nondoubling", **_CELEBA, image_size=32,
                                            z_dim=128, hidden=128, min_steps=64, max_steps=128,
                                            batch_size=128, p_update=1.0, grad_clip=1.0),
    # --- convolutional baseline (appendix A.6) ---
    "mnist_baseline": BaselineConfig(name="mnist_baseline", **_MNIST),
    # --- CPU scale: same architecture, smaller widths; float32 here (`vnca train --precision auto` turns
    #     bf16 on where it pays: CPUs with AMX and GPUs, chapter 10) ---
    "mnist_doubling_cpu": DoublingConfig(name="mnist_doubling_cpu", **_MNIST, z_dim=32, hidden=64,
                                         n_blocks=1, lr=1e-3, n_updates=3000, encoder_channels=16),
    "celeba_doubling_cpu": DoublingConfig(name="celeba_doubling_cpu", **{**_CELEBA, "dataset": "celeba"},
                                          image_size=32, n_doublings=4, z_dim=64, hidden=64, n_blocks=2,
                                          steps_per_stage=6, lr=5e-4, n_updates=3000, encoder_channels=16),
    "noto_doubling_cpu": DoublingConfig(name="noto_doubling_cpu", **_NOTO, n_doublings=5, z_dim=64,
                                        hidden=64, n_blocks=2, steps_per_stage=6, lr=5e-4,
                                        n_updates=3000, encoder_channels=16),
    # the recipe of chapter 8: every cell hears from the border within T_min = 16 steps (p_update = 1,
    # the reference's CelebA value), the reference's clip of 1; not in the paper: a bound on the state,
    # and pool states that run up to 96 extra steps and are reused about three times
    "mnist_nondoubling_cpu": NonDoublingConfig(name="mnist_nondoubling_cpu", **_MNIST, z_dim=32,
                                               hidden=64, min_steps=16, max_steps=32, batch_size=16,
                                               pool_size=512, pool_fraction=0.75, pool_extra_steps=96,
                                               grad_clip=1.0, state_bound=10.0, lr=1e-3, n_updates=3000,
                                               encoder_channels=16),
    "celeba_nondoubling_cpu": NonDoublingConfig(name="celeba_nondoubling_cpu", **_CELEBA, image_size=32,
                                                z_dim=64, hidden=64, min_steps=16, max_steps=32,
                                                batch_size=32, pool_size=256, lr=5e-4, n_updates=3000,
                                                encoder_channels=16),
    "mnist_baseline_cpu": BaselineConfig(name="mnist_baseline_cpu", **_MNIST, z_dim=32, lr=1e-3,
                                         n_updates=3000, encoder_channels=16),
}


def get_preset(preset: str, **overrides) -> ModelConfig:
    """The named preset, optionally with some fields changed. Unknown names list the valid ones."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; the presets are: {', '.join(sorted(PRESETS))}")
    return PRESETS[preset].replace(**overrides) if overrides else PRESETS[preset]


def config_to_dict(cfg: ModelConfig) -> dict:
    """A JSON-ready dict that records the variant, so that `config_from_dict` can rebuild it."""
    return {"variant": type(cfg).__name__, **dataclasses.asdict(cfg)}


def config_from_dict(d: dict) -> ModelConfig:
    """Inverse of `config_to_dict`; unknown variants or fields raise ValueError."""
    variants = {c.__name__: c for c in (DoublingConfig, NonDoublingConfig, BaselineConfig)}
    d = dict(d)
    variant = d.pop("variant", None)
    if variant not in variants:
        raise ValueError(f"config variant must be one of {sorted(variants)}, got {variant!r}")
    cls = variants[variant]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {variant} fields: {sorted(unknown)}")
    return cls(**d)
