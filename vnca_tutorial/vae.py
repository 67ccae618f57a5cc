"""The VAE around any decoder: q(z|x), p(z), p(x|z), the ELBO and the importance-weighted bound.

`VAE` is shared by the VNCA (vnca_tutorial.model) and the convolutional baseline
(vnca_tutorial.baseline); they differ only in the decoder. Explained in chapter 4 (book/04_vae.md)
and chapter 5 (book/05_evaluation.md).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from .bounds import ELBO, log_mean_exp, split_sizes
from .checks import check_beta, check_count, check_images, check_latents
from .encoder import Encoder
from .likelihoods import likelihood_from_state


class VAE(nn.Module):
    """A VAE with the paper's encoder; subclasses provide ``self.decoder``: z (B, Z) -> states."""

    grows = False    # True for a VNCA: its decoder grows the image through states (`VNCA.grow`)

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config.image_channels, config.image_size, config.z_dim,
                               channels=config.encoder_channels)

    # --- the three distributions -------------------------------------------------------------
    def prior(self) -> Distribution:
        """p(z) = N(0, I)."""
        zeros = torch.zeros(self.config.z_dim, device=self.device)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def q_z_given_x(self, x: Tensor) -> Distribution:
        """q(z|x) = N(mean(x), diag(exp(log_var(x)))), batch shape (B,), event shape (Z,)."""
        check_images(x, self.config.image_channels, self.config.image_size, self.config.likelihood)
        mean, log_var = self.encoder(self.encoder_input(x))   # (B, Z), (B, Z)
        return Independent(Normal(mean, torch.exp(0.5 * log_var)), 1)

    def p_x_given_z(self, z: Tensor, **decode_kwargs) -> Distribution:
        """p(x|z): decode z into cell states and read the likelihood from their first channels."""
        check_latents(z, self.config.z_dim)
        return self.likelihood(self.decode(z, **decode_kwargs))

    # --- helpers ----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encoder_input(self, x: Tensor) -> Tensor:
        """Binary images go in as they are; 8-bit RGB is scaled to [-1, 1]."""
        x = x.to(self.device, torch.float32)
        return x if self.config.likelihood == "bernoulli" else x / 127.5 - 1.0

    def decode(self, z: Tensor, **decode_kwargs) -> Tensor:  # (B, Z) -> (B, Z, H, W)
        return self.decoder(z, **decode_kwargs)

    def likelihood(self, state: Tensor) -> Distribution:
        c = self.config
        return likelihood_from_state(state, c.likelihood, n_mix=c.n_mix, image_channels=c.image_channels)

    # --- bounds -----------------------------------------------------------------------------
    def elbo(self, x: Tensor, beta: float | None = None, analytic_kl: bool = True,
             **decode_kwargs) -> ELBO:
        """Single-sample ELBO per example: log p(x|z) - beta KL(q(z|x) || p(z)), z ~ q(z|x).

        ``analytic_kl=False`` uses the single-sample estimate log q(z|x) - log p(z) instead, which makes
        the estimator equal to the importance-weighted bound with k = 1 on the same draw of z.
        """
        beta = self.config.beta if beta is None else beta
        check_beta(beta)
        q = self.q_z_given_x(x)
        z = q.rsample()                                            # (B, Z), reparameterised
        reconstruction = self.p_x_given_z(z, **decode_kwargs).log_prob(x.to(self.device))  # (B,)
        kl = kl_divergence(q, self.prior()) if analytic_kl else q.log_prob(z) - self.prior().log_prob(z)
        return ELBO(reconstruction - beta * kl, reconstruction, kl)

    def forward(self, x: Tensor, terms: bool = False, beta: float | None = None, **decode_kwargs):
        """The training loss: minus the mean beta-ELBO of the batch (and its terms if asked)."""
        e = self.elbo(x, beta=beta, **decode_kwargs)
        loss = -e.elbo.mean()
        if not terms:
            return loss
        return loss, {"reconstruction": e.reconstruction.mean().item(), "kl": e.kl.mean().item()}

    def log_weights(self, x: Tensor, eps: Tensor, q: Distribution, **decode_kwargs) -> Tensor:
        """log p(x, z) - log q(z|x) for z = mean + std * eps; eps (S, B, Z) -> (S, B)."""
        base = q.base_dist
        z = base.loc + base.scale * eps                            # (S, B, Z)
        s, b = z.shape[:2]
        x = x.to(self.device)
        x_rep = x.expand(s, *x.shape).reshape(s * b, *x.shape[1:])  # (S*B, C, H, W)
        log_px_z = self.p_x_given_z(z.reshape(s * b, -1), **decode_kwargs).log_prob(x_rep)
        return log_px_z.view(s, b) + self.prior().log_prob(z) - q.log_prob(z)

    def iwae(self, x: Tensor, k: int = 128, chunk: int | None = None,
             generator: torch.Generator | None = None, **decode_kwargs) -> Tensor:
        """Importance-weighted bound on log p(x) in nats, per example (B,), with k samples.

        The k samples are drawn at once (so chunked and unchunked evaluation see the same z) and
        decoded ``chunk`` at a time (``default_chunk`` unless told), which keeps memory bounded for
        k = 128. The noise is drawn where ``generator`` lives, so a CPU generator gives a GPU evaluation
        the same z as a CPU one.
        """
        check_count(k, "k (importance samples)")
        q = self.q_z_given_x(x)
        loc = q.base_dist.loc                                      # (B, Z)
        noise_device = generator.device if generator is not None else loc.device
        eps = torch.randn((k, *loc.shape), generator=generator, device=noise_device)  # (k, B, Z)
        eps = eps.to(loc.device)
        chunk = chunk or self.default_chunk(loc.shape[0])
        log_w = [self.log_weights(x, e, q, **decode_kwargs) for e in eps.split(split_sizes(k, chunk))]
        return log_mean_exp(torch.cat(log_w, dim=0), dim=0)       # (B,)

    def default_chunk(self, batch: int) -> int:
        """How many of the k samples of a batch of ``batch`` images ``iwae`` decodes at once, unless told.

        On a CPU, about 8 grids in all: small tensors stay in cache (1.2-1.6x faster than 64 at once with
        the package's ELU, benchmarks/elu_speed.py). On a GPU 64, and also on a CPU for a decoder whose
        cells update at random (p_update < 1, as the shipped non-doubling VNCA): it draws its update masks
        on each call, so its bound depends on the chunk, and the figures on its card were measured with 64.
        """
        random_decoder = getattr(self.config, "p_update", 1.0) < 1
        grids = 8 if self.device.type == "cpu" and not random_decoder else 64
        return max(1, grids // batch)

    # --- generation -------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, mean: bool = True, generator: torch.Generator | None = None,
               **decode_kwargs) -> Tensor:
        """n images from the model: z ~ p(z), then the mean of p(x|z) (or a sample of it)."""
        check_count(n, "n (images to sample)")
        z = torch.randn(n, self.config.z_dim, generator=generator, device=self.device)
        p = self.p_x_given_z(z, **decode_kwargs)
        return p.mean if mean else p.sample()

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
