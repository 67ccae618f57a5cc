"""Decoder likelihoods p(x|z) for the VNCA.

Explained in chapter 3 (book/03_likelihoods.md).

The VNCA decoder is a cellular automaton whose final cell states are a tensor
``state`` of shape (B, C_state, H, W).  A few of those channels are read out as
the parameters of an image distribution p(x|z) (Palm et al., ICLR 2022, Sec. 3):

* ``"bernoulli"``  -- binarised MNIST: one logit per pixel and channel.
* ``"dlogistic"``  -- 8-bit RGB images (e.g. CelebA): the discretized logistic
  mixture of PixelCNN++ (Salimans et al., ICLR 2017, Sec. 2.1-2.2).

Both are ``torch.distributions.Distribution`` objects whose *event* is a whole
image, so ``log_prob`` returns one number per image, in nats.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, constraints

__all__ = [
    "BernoulliImage",
    "DiscretizedLogisticMixture",
    "discretized_logistic_log_probs",
    "likelihood_from_state",
    "n_likelihood_channels",
    "LIKELIHOOD_KINDS",
]

LIKELIHOOD_KINDS = ("bernoulli", "dlogistic")

# Discretized logistic constants (PixelCNN++): pixels v in {0..255} are rescaled
# to x = v / 127.5 - 1 in [-1, 1]; each value owns a bin of half-width 1/255.
N_VALUES = 256
HALF_BIN = 1.0 / 255.0
MIN_LOG_SCALE = -7.0  # PixelCNN++ clamps log-scales at -7 (s >= ~9e-4)
TINY_PROB = 1e-5  # below this, PixelCNN++ switches to the mid-bin pdf


# --------------------------------------------------------------------------- #
# Input checks (shared)
# --------------------------------------------------------------------------- #
def _check_image(x: Tensor, event_shape: torch.Size, expected: str) -> None:
    """Raise ValueError unless x is a finite (..., C, H, W) image of the right shape."""
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor holding {expected}, got {type(x).__name__}")
    if x.dim() < 3:
        raise ValueError(f"x must have shape (..., C, H, W) = (..., {tuple(event_shape)}), "
                         f"got {tuple(x.shape)}")
    if x.shape[-3] != event_shape[0]:
        raise ValueError(
            f"x has {x.shape[-3]} channels but this likelihood expects {event_shape[0]} "
            f"(x must be (..., {tuple(event_shape)}) holding {expected}), got shape {tuple(x.shape)}"
        )
    if x.shape[-2:] != event_shape[-2:]:
        raise ValueError(f"x has spatial size {tuple(x.shape[-2:])}, expected {tuple(event_shape[-2:])}")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"x contains NaN or inf values; expected {expected}")


# --------------------------------------------------------------------------- #
# Bernoulli (binarised MNIST)
# --------------------------------------------------------------------------- #
class BernoulliImage(Distribution):
    """p(x|z) for binary images: independent Bernoulli pixels given logits.

    Explained in chapter 3 (book/03_likelihoods.md).

    Args:
        logits: (B, C, H, W) real-valued logits; P(x=1) = sigmoid(logits).

    ``batch_shape = (B,)`` and ``event_shape = (C, H, W)``: one image is one event,
    so ``log_prob`` sums over channels and pixels.  Extra leading dimensions are
    allowed (``batch_shape = logits.shape[:-3]``).
    """

    arg_constraints = {"logits": constraints.real}
    support = constraints.independent(constraints.boolean, 3)
    has_rsample = False

    def __init__(self, logits: Tensor, validate_args: bool | None = None) -> None:
        if logits.dim() < 3:
            raise ValueError(f"logits must have shape (B, C, H, W), got {tuple(logits.shape)}")
        self.logits = logits  # (B, C, H, W)
        super().__init__(logits.shape[:-3], logits.shape[-3:], validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return torch.sigmoid(self.logits)  # (B, C, H, W)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x|z) in nats, summed over (C, H, W). x: (..., C, H, W) in {0, 1}."""
        if self._validate_args:
            _check_image(x, self.event_shape, "binary values in {0, 1}")
            if ((x != 0) & (x != 1)).any():
                raise ValueError(
                    "BernoulliImage expects binary x with values in {0, 1} "
                    f"(binarise the image first), got values in [{x.min().item()}, {x.max().item()}]"
                )
        x = x.to(self.logits.dtype)
        # log p = x * l - log(1 + e^l)  (= -binary cross-entropy with logits)
        log_p = x * self.logits - F.softplus(self.logits)  # (..., C, H, W)
        return log_p.sum(dim=(-3, -2, -1))  # (...,)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        shape = torch.Size(sample_shape) + self.logits.shape  # (*S, B, C, H, W)
        with torch.no_grad():
            return torch.bernoulli(self.mean.expand(shape))


# --------------------------------------------------------------------------- #
# Discretized logistic (PixelCNN++)
# --------------------------------------------------------------------------- #
def _rescale(v: Tensor) -> Tensor:
    """Pixel values 0..255 -> [-1, 1] (PixelCNN++ convention: x = v / 127.5 - 1)."""
    return v / 127.5 - 1.0


def _discretized_logistic_log_prob(v: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log P(V = v) for one discretized logistic; v holds pixel values 0..255 (as floats).

    Value v owns the bin [x - 1/255, x + 1/255] around its rescaled centre
    x = v / 127.5 - 1, except that the edge bins are open: v = 0 takes all mass
    below -1 + 1/255 and v = 255 all mass above 1 - 1/255.  ``mean`` and
    ``log_scale`` live in the rescaled [-1, 1] space.  Follows PixelCNN++
    (Salimans et al. 2017, eq. 2 and their ``discretized_mix_logistic_loss``),
    including its numerical-stability tricks.  All arguments broadcast.
    """
    inv_s = torch.exp(-log_scale)
    # Bin edges computed from v directly, so neighbouring bins share bit-identical
    # edges and the 256 probabilities telescope to exactly 1 (also in float32).
    plus_in = inv_s * (_rescale(v + 0.5) - mean)  # (upper edge - mu) / s
    min_in = inv_s * (_rescale(v - 0.5) - mean)  # (lower edge - mu) / s
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)  # mass of an interior bin

    log_cdf_plus = plus_in - F.softplus(plus_in)  # log sigmoid(plus_in): edge bin v = 0
    log_one_minus_cdf_min = -F.softplus(min_in)  # log(1 - sigmoid(min_in)): edge bin v = 255
    # PixelCNN++ fallback: when the bin mass is tiny, sigmoid(a) - sigmoid(b) loses
    # its precision, so use log(pdf at bin centre * bin width 1/127.5) instead.
    mid_in = inv_s * (_rescale(v) - mean)
    log_pdf_mid = mid_in - log_scale - 2.0 * F.softplus(mid_in)  # log logistic pdf
    log_interior = torch.where(
        cdf_delta > TINY_PROB,
        torch.log(cdf_delta.clamp(min=1e-12)),
        log_pdf_mid - math.log(127.5),
    )
    # PixelCNN++ tests x < -0.999 / x > 0.999; testing v directly is the same thing.
    return torch.where(v <= 0, log_cdf_plus, torch.where(v >= 255, log_one_minus_cdf_min, log_interior))


def discretized_logistic_log_probs(mean: Tensor, log_scale: Tensor) -> Tensor:
    """log P(v) for every v in 0..255 of a single discretized logistic.

    Explained in chapter 3 (book/03_likelihoods.md).

    ``mean`` and ``log_scale`` live in the rescaled [-1, 1] space (log-scale is
    clamped below at -7, as in the distribution).  Edge bins 0 and 255 are open.
    Returns shape (*broadcast(mean, log_scale).shape, 256).
    """
    mean, log_scale = torch.broadcast_tensors(torch.as_tensor(mean), torch.as_tensor(log_scale))
    dtype = mean.dtype if mean.is_floating_point() else torch.get_default_dtype()
    values = torch.arange(N_VALUES, dtype=dtype, device=mean.device)  # (256,)
    log_scale = log_scale.to(dtype).clamp(min=MIN_LOG_SCALE)
    # (..., 256): the log-probability of every value
    return _discretized_logistic_log_prob(values, mean.to(dtype)[..., None], log_scale[..., None])


class DiscretizedLogisticMixture(Distribution):
    """PixelCNN++ discretized logistic mixture for 8-bit RGB images, L components.

    Explained in chapter 3 (book/03_likelihoods.md).
    Reference: Salimans et al., "PixelCNN++", ICLR 2017, Sec. 2.1-2.2.

    Args:
        params: (B, 10*L, H, W) raw decoder outputs.
        n_mix: L, the number of mixture components.

    Channel layout of ``params`` (k = component 0..L-1, c = colour 0..2 = R, G, B)::

        [0      : L  ]   mixture logits          channel k
        [L      : 4L ]   means mu_{k,c}          channel L  + 3*k + c
        [4L     : 7L ]   log-scales              channel 4L + 3*k + c   (clamped >= -7)
        [7L     : 10L]   coupling coefficients   channel 7L + 3*k + j,  j = alpha, beta, gamma
                                                 (squashed with tanh)

    i.e. each block of 3L channels is component-major, ``(L, 3)`` when unflattened.
    Within a pixel the colours are autoregressive (PixelCNN++ Sec. 2.2): with x_R,
    x_G the *observed* values rescaled to [-1, 1],

        mu_R = mu_{k,R};  mu_G = mu_{k,G} + alpha_k x_R;  mu_B = mu_{k,B} + beta_k x_R + gamma_k x_G.

    A pixel picks one mixture component for all three colours.
    ``batch_shape = (B,)``, ``event_shape = (3, H, W)``.
    """

    arg_constraints = {"params": constraints.real}
    support = constraints.independent(constraints.integer_interval(0, 255), 3)
    has_rsample = False

    def __init__(self, params: Tensor, n_mix: int, validate_args: bool | None = None) -> None:
        if not isinstance(n_mix, int) or n_mix < 1:
            raise ValueError(f"n_mix must be a positive int, got {n_mix!r}")
        if params.dim() < 3 or params.shape[-3] != 10 * n_mix:
            raise ValueError(
                f"params must have shape (B, 10*n_mix, H, W) = (B, {10 * n_mix}, H, W) "
                f"for n_mix={n_mix}, got {tuple(params.shape)}"
            )
        self.params, self.n_mix = params, n_mix
        L = n_mix
        self.mix_logits = params[..., :L, :, :]  # (B, L, H, W)
        self.means = params[..., L : 4 * L, :, :].unflatten(-3, (L, 3))  # (B, L, 3, H, W)
        log_scales = params[..., 4 * L : 7 * L, :, :].unflatten(-3, (L, 3))  # (B, L, 3, H, W)
        self.log_scales = log_scales.clamp(min=MIN_LOG_SCALE)  # PixelCNN++: max(log s, -7)
        self.coeffs = torch.tanh(params[..., 7 * L :, :, :].unflatten(-3, (L, 3)))  # (B, L, 3, H, W)
        batch_shape, spatial = params.shape[:-3], params.shape[-2:]
        super().__init__(batch_shape, torch.Size((3, *spatial)), validate_args=validate_args)

    def _coupled_means(self, x: Tensor) -> Tensor:
        """Per-component channel means given rescaled colours x: (..., 1, 3, H, W) -> (..., L, 3, H, W)."""
        x_r, x_g = x[..., 0, :, :], x[..., 1, :, :]  # (..., 1, H, W)
        m, c = self.means, self.coeffs  # (B, L, 3, H, W)
        mu_g = m[..., 1, :, :] + c[..., 0, :, :] * x_r  # (..., L, H, W): + alpha x_R
        mu_b = m[..., 2, :, :] + c[..., 1, :, :] * x_r + c[..., 2, :, :] * x_g  # + beta x_R + gamma x_G
        mu_r = m[..., 0, :, :].expand_as(mu_g)  # R has no earlier colour
        return torch.stack([mu_r, mu_g, mu_b], dim=-3)  # (..., L, 3, H, W)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x|z) in nats summed over the image. x: (..., 3, H, W), integers in [0, 255]."""
        if self._validate_args:
            _check_values_8bit(x, self.event_shape)
        v = x.to(self.params.dtype).unsqueeze(-4)  # (..., 1, 3, H, W) values 0..255
        mu = self._coupled_means(_rescale(v))  # (..., L, 3, H, W)
        log_p_sub = _discretized_logistic_log_prob(v, mu, self.log_scales)  # (..., L, 3, H, W)
        log_p_comp = log_p_sub.sum(dim=-3)  # (..., L, H, W): colours multiply within a component
        log_mix = F.log_softmax(self.mix_logits, dim=-3)  # (B, L, H, W)
        log_p_pixel = torch.logsumexp(log_mix + log_p_comp, dim=-3)  # (..., H, W)
        return log_p_pixel.sum(dim=(-2, -1))  # (...,)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        """Exact samples (float tensor of integers in [0, 255]), shape (*sample_shape, B, 3, H, W).

        Pick a component per pixel, then draw R, G, B in order by inverse-CDF
        sampling of the logistic and rounding to the nearest bin.  The coupling
        uses the already *discretized* R and G, so samples follow exactly the
        distribution scored by ``log_prob``.
        """
        L = self.n_mix
        mixture = torch.distributions.Categorical(logits=self.mix_logits.movedim(-3, -1))
        k = mixture.sample(sample_shape)                                            # (*S, B, H, W)
        pick = F.one_hot(k, L).movedim(-1, -3).to(self.params.dtype).unsqueeze(-3)  # (*S, B, L, 1, H, W)
        means = (pick * self.means).sum(-4)  # (*S, B, 3, H, W)
        scales = (pick * self.log_scales.exp()).sum(-4)  # (*S, B, 3, H, W)
        alpha, beta, gamma = (pick * self.coeffs).sum(-4).unbind(-3)  # each (*S, B, H, W)

        def draw(mu: Tensor, s: Tensor) -> Tensor:  # one colour, (*S, B, H, W)
            u = torch.rand_like(mu).clamp(min=torch.finfo(mu.dtype).tiny)  # (0, 1)
            y = mu + s * (torch.log(u) - torch.log1p(-u))  # continuous logistic sample
            return torch.round(((y + 1.0) * 127.5).clamp(0.0, 255.0))  # bin index 0..255

        v_r = draw(means[..., 0, :, :], scales[..., 0, :, :])
        x_r = _rescale(v_r)
        v_g = draw(means[..., 1, :, :] + alpha * x_r, scales[..., 1, :, :])
        x_g = _rescale(v_g)
        v_b = draw(means[..., 2, :, :] + beta * x_r + gamma * x_g, scales[..., 2, :, :])
        return torch.stack([v_r, v_g, v_b], dim=-3)  # (*S, B, 3, H, W)

    @property
    def mean(self) -> Tensor:
        """Expected image, (B, 3, H, W) in [0, 255].

        Exact for each component and colour *given* the mean it is conditioned on;
        for G and B the coupling plugs in the earlier colours' expected values
        (mu_G ~ mu_{k,G} + alpha_k E[x_R]), which is an approximation because the
        rounding and clipping make E[v | mu] non-linear in mu.
        """
        s = self.log_scales.exp()  # (B, L, 3, H, W)
        m, c = self.means, self.coeffs
        e_r = _expected_value(m[..., 0, :, :], s[..., 0, :, :])  # (B, L, H, W)
        x_r = _rescale(e_r)
        e_g = _expected_value(m[..., 1, :, :] + c[..., 0, :, :] * x_r, s[..., 1, :, :])
        x_g = _rescale(e_g)
        e_b = _expected_value(m[..., 2, :, :] + c[..., 1, :, :] * x_r + c[..., 2, :, :] * x_g, s[..., 2, :, :])
        e = torch.stack([e_r, e_g, e_b], dim=-3)  # (B, L, 3, H, W)
        weights = torch.softmax(self.mix_logits, dim=-3).unsqueeze(-3)  # (B, L, 1, H, W)
        # a weighted average of values in [0, 255]; the clamp only removes float rounding (255.00002)
        return (weights * e).sum(dim=-4).clamp(0.0, 255.0)  # (B, 3, H, W)


def _expected_value(mu: Tensor, s: Tensor) -> Tensor:
    """E[v] of a discretized logistic, in [0, 255]: E[v] = sum_{v=1}^{255} P(V >= v).

    P(V >= v) = 1 - F(lower edge of bin v) = sigmoid((mu - t_v) / s), t_v = rescaled v - 1/255.
    """
    total = torch.zeros_like(mu)
    for v in range(1, N_VALUES):
        t_v = v / 127.5 - 1.0 - HALF_BIN
        total = total + torch.sigmoid((mu - t_v) / s)
    return total


def _check_values_8bit(x: Tensor, event_shape: torch.Size) -> None:
    """Raise ValueError unless x is (..., 3, H, W) of finite integers in [0, 255]."""
    expected = "integer pixel values in [0, 255] (uint8 or float)"
    _check_image(x, event_shape, expected)
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"x has dtype {x.dtype}; expected {expected}")
    if x.numel() and (x.min() < 0 or x.max() > 255):
        raise ValueError(
            f"x has values in [{x.min().item()}, {x.max().item()}]; expected {expected}. "
            "Do not rescale images to [0, 1] or [-1, 1] before calling log_prob."
        )
    if x.is_floating_point() and (x != torch.round(x)).any():
        raise ValueError(f"x contains non-integer values; expected {expected}")


# --------------------------------------------------------------------------- #
# From decoder cell states to p(x|z)
# --------------------------------------------------------------------------- #
def n_likelihood_channels(kind: str, n_mix: int = 1, image_channels: int = 1) -> int:
    """How many state channels the likelihood reads: ``image_channels`` for
    'bernoulli', ``10 * n_mix`` for 'dlogistic' (always RGB).

    Explained in chapter 3 (book/03_likelihoods.md).
    """
    if kind == "bernoulli":
        if image_channels < 1:
            raise ValueError(f"image_channels must be >= 1, got {image_channels}")
        return image_channels
    if kind == "dlogistic":
        if n_mix < 1:
            raise ValueError(f"n_mix must be >= 1, got {n_mix}")
        return 10 * n_mix
    raise ValueError(f"unknown likelihood kind {kind!r}; valid kinds are {list(LIKELIHOOD_KINDS)}")


def likelihood_from_state(state: Tensor, kind: str, n_mix: int = 1, image_channels: int = 1) -> Distribution:
    """Turn decoder cell states (B, C_state, H, W) into p(x|z).

    Explained in chapter 3 (book/03_likelihoods.md).

    'bernoulli' reads the first ``image_channels`` channels as logits;
    'dlogistic' reads the first ``10 * n_mix`` channels as PixelCNN++ parameters
    (``image_channels`` is ignored: the mixture is always RGB).  The remaining
    channels are the automaton's hidden state (Palm et al. 2022, Sec. 3).
    """
    n = n_likelihood_channels(kind, n_mix, image_channels)  # also validates kind
    if state.dim() < 3 or state.shape[-3] < n:
        raise ValueError(
            f"likelihood {kind!r} needs at least {n} state channels, got state of shape {tuple(state.shape)} "
            "(expected (B, C_state, H, W))"
        )
    head = state[..., :n, :, :]  # (B, n, H, W)
    if kind == "bernoulli":
        return BernoulliImage(head)
    return DiscretizedLogisticMixture(head, n_mix)
