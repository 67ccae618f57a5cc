"""The deep convolutional VAE baseline of appendix A.6: the same encoder, a transposed-conv decoder.

Used to compare against the VNCA in chapter 6 (latent space) and chapter 7 (damage).
"""
from __future__ import annotations

from torch import Tensor, nn

from .config import BaselineConfig
from .encoder import encoder_output_size
from .vae import VAE


class ConvDecoder(nn.Module):
    """z (B, Z) -> linear -> (B, 16c, s, s) -> four stride-2 5x5 transposed convs -> (B, Z_out, H, W).

    The output has as many channels as the likelihood reads, so `VAE.likelihood` applies unchanged.
    """

    def __init__(self, z_dim: int, image_size: int, out_channels: int, channels: int = 32) -> None:
        super().__init__()
        self.side = encoder_output_size(image_size)
        self.top = channels * 16
        self.linear = nn.Linear(z_dim, self.top * self.side * self.side)
        layers: list[nn.Module] = []
        for i in range(4, 0, -1):                       # 16c -> 8c -> 4c -> 2c -> c, doubling the size
            layers += [nn.ELU(), nn.ConvTranspose2d(channels * 2 ** i, channels * 2 ** (i - 1), 5,
                                                    stride=2, padding=2, output_padding=1)]
        layers += [nn.ELU(), nn.Conv2d(channels, out_channels, 5, padding=2)]
        self.convs = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = self.linear(z).view(-1, self.top, self.side, self.side)  # (B, 16c, s, s)
        return self.convs(h)                                          # (B, out, 16 s, 16 s)


class ConvVAE(VAE):
    """The baseline VAE; same interface as VNCA (elbo, iwae, sample), no growth trajectory."""

    def __init__(self, config: BaselineConfig) -> None:
        if not isinstance(config, BaselineConfig):
            raise ValueError(f"ConvVAE needs a BaselineConfig, got {type(config).__name__}")
        super().__init__(config)
        self.decoder = ConvDecoder(config.z_dim, config.image_size, config.n_likelihood_channels,
                                   channels=config.encoder_channels)
