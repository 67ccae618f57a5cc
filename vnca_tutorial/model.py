"""The Variational Neural Cellular Automaton: a VAE whose decoder is an NCA.

Explained in chapter 2 (book/02_doubling.md), chapter 4 (book/04_vae.md) and chapter 6
(book/06_self_organisation.md).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .checks import check_latents
from .config import BaselineConfig, DoublingConfig, ModelConfig, NonDoublingConfig, get_preset
from .decoders import DoublingDecoder, NonDoublingDecoder, StepHook, StepInfo
from .vae import VAE


def make_decoder(config: DoublingConfig | NonDoublingConfig) -> DoublingDecoder | NonDoublingDecoder:
    """The NCA decoder a config describes."""
    c = config
    if isinstance(c, DoublingConfig):
        return DoublingDecoder(c.z_dim, c.hidden, c.n_blocks, c.n_doublings, c.steps_per_stage,
                               bf16=c.bf16, checkpointing=c.checkpointing)
    return NonDoublingDecoder(c.z_dim, c.hidden, c.n_blocks, c.image_size, c.min_steps, c.max_steps,
                              bf16=c.bf16, checkpointing=c.checkpointing, p_update=c.p_update)


class VNCA(VAE):
    """VNCA(config): encoder q(z|x), prior p(z) = N(0, I), NCA decoder p(x|z).

    >>> model = VNCA(get_preset("mnist_doubling_cpu"))
    >>> loss = model(x)                    # minus the ELBO of a batch x (B, 1, 32, 32)
    >>> log_px = model.iwae(x, k=128)      # importance-weighted bound, nats per image
    >>> states, infos = model.grow(z)      # every state of the growth, with what produced it
    """

    def __init__(self, config: DoublingConfig | NonDoublingConfig) -> None:
        if not isinstance(config, (DoublingConfig, NonDoublingConfig)):
            raise ValueError(f"VNCA needs a DoublingConfig or NonDoublingConfig, got "
                             f"{type(config).__name__}; use ConvVAE for BaselineConfig")
        super().__init__(config)
        self.decoder = make_decoder(config)

    grows = True     # the decoder passes through states that can be shown and damaged (`grow`)

    @property
    def doubling(self) -> bool:
        return isinstance(self.config, DoublingConfig)

    def forward(self, x: Tensor, terms: bool = False, steps: int | None = None, beta: float | None = None,
                **kw):
        """Minus the mean beta-ELBO (beta: the config's unless given). Pool training of the non-doubling
        VNCA is `vnca_tutorial.pool.pool_loss`, called by the training loop (chapter 8)."""
        beta = self.config.beta if beta is None else beta
        return super().forward(x, terms=terms, beta=beta, steps=steps, **kw)

    def grow(self, z: Tensor, on_step: StepHook | None = None, **decode_kwargs
             ) -> tuple[list[Tensor], list[StepInfo]]:
        """Every cell state from the seed to the final grid (Fig. 4), and what produced each."""
        check_latents(z, self.config.z_dim)
        _, states = self.decoder(z, return_states=True, on_step=on_step, **decode_kwargs)
        schedule = self.decoder.schedule(**decode_kwargs)
        return states, schedule


def build_model(config: ModelConfig | str) -> VAE:
    """The model a config (or preset name) describes: VNCA, or ConvVAE for the baseline."""
    from .baseline import ConvVAE
    config = get_preset(config) if isinstance(config, str) else config
    return ConvVAE(config) if isinstance(config, BaselineConfig) else VNCA(config)
