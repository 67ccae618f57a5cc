"""Tests for vnca_tutorial.likelihoods (chapter 3, book/03_likelihoods.md).

The discretized-logistic tests compare against a reference written here
directly from the logistic CDF, in float64, independent of the package code.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from vnca_tutorial.likelihoods import (
    BernoulliImage,
    DiscretizedLogisticMixture,
    discretized_logistic_log_probs,
    likelihood_from_state,
    n_likelihood_channels,
)

F64 = torch.float64
VALUES = torch.arange(256, dtype=F64)  # every 8-bit value


# --------------------------------------------------------------------------- #
# Independent reference (float64, straight from the logistic CDF)
# --------------------------------------------------------------------------- #
def ref_probs(mu: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """P(v) for v = 0..255: CDF(centre + 1/255) - CDF(centre - 1/255), open edge bins. (..., 256)"""
    mu, s = torch.as_tensor(mu, dtype=F64)[..., None], torch.as_tensor(s, dtype=F64)[..., None]
    centre = VALUES / 127.5 - 1.0

    def cdf(t):
        return torch.sigmoid((t - mu) / s)

    upper = torch.where(VALUES == 255, torch.ones_like(centre), cdf(centre + 1.0 / 255.0))
    lower = torch.where(VALUES == 0, torch.zeros_like(centre), cdf(centre - 1.0 / 255.0))
    return upper - lower


def pack_params(mix_logits, means, log_scales, coeffs) -> torch.Tensor:
    """(L,), (L, 3), (L, 3), (L, 3) per pixel -> params (1, 10L, 1, 1) in the documented layout:
    channel k = logit k; L + 3k + c = mean; 4L + 3k + c = log-scale; 7L + 3k + j = raw coupling."""
    L = len(mix_logits)
    params = torch.zeros(1, 10 * L, 1, 1, dtype=F64)
    for k in range(L):
        params[0, k] = mix_logits[k]
        for c in range(3):
            params[0, L + 3 * k + c] = means[k][c]
            params[0, 4 * L + 3 * k + c] = log_scales[k][c]
            params[0, 7 * L + 3 * k + c] = coeffs[k][c]
    return params


def ref_image_log_prob(params: torch.Tensor, n_mix: int, x: torch.Tensor) -> torch.Tensor:
    """Direct float64 evaluation of PixelCNN++'s likelihood, pixel by pixel, with python floats."""
    L = n_mix
    B, _, H, W = params.shape
    out = torch.zeros(B, dtype=F64)
    for b in range(B):
        for i in range(H):
            for j in range(W):
                p = params[b, :, i, j].tolist()
                v = [int(x[b, c, i, j]) for c in range(3)]
                xr, xg = v[0] / 127.5 - 1, v[1] / 127.5 - 1
                weights = torch.softmax(torch.tensor(p[:L], dtype=F64), 0).tolist()
                pixel_prob = 0.0
                for k in range(L):
                    m = [p[L + 3 * k + c] for c in range(3)]
                    s = [math.exp(max(p[4 * L + 3 * k + c], -7.0)) for c in range(3)]
                    alpha, beta, gamma = (math.tanh(p[7 * L + 3 * k + c]) for c in range(3))
                    mu = [m[0], m[1] + alpha * xr, m[2] + beta * xr + gamma * xg]
                    comp = 1.0
                    for c in range(3):
                        prob = ref_probs(torch.tensor(mu[c], dtype=F64), torch.tensor(s[c], dtype=F64))[v[c]].item()
                        assert prob > 1e-4, "test set-up: keep reference probabilities well-conditioned"
                        comp *= prob
                    pixel_prob += weights[k] * comp
                out[b] += math.log(pixel_prob)
    return out


# --------------------------------------------------------------------------- #
# Single discretized logistic (the helper shared with log_prob)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("log_scale", [-7.0, -6.5, -5.0, -2.0, 0.0, 3.0])
def test_single_logistic_sums_to_one(dtype, log_scale):
    mean = torch.cat([torch.linspace(-1.2, 1.2, 6001), torch.tensor([-5.0, 5.0, -1.0, 1.0, 0.0])]).to(dtype)
    log_p = discretized_logistic_log_probs(mean, torch.tensor(log_scale, dtype=dtype))  # (N, 256)
    assert log_p.shape == (mean.numel(), 256)
    assert torch.isfinite(log_p).all()
    total = log_p.double().exp().sum(-1)
    assert (total - 1).abs().max().item() < 1e-5


def test_single_logistic_matches_cdf_reference():
    g = torch.Generator().manual_seed(0)
    mean = torch.rand(200, generator=g, dtype=F64) * 2.4 - 1.2
    log_scale = torch.rand(200, generator=g, dtype=F64) * 4 - 4  # s in [0.018, 1]
    p_ref = ref_probs(mean, log_scale.exp())  # (200, 256)
    log_p = discretized_logistic_log_probs(mean, log_scale)
    well_conditioned = p_ref > 1e-4  # the PixelCNN++ pdf fallback only acts below 1e-5
    assert well_conditioned.sum() > 5000
    torch.testing.assert_close(log_p[well_conditioned], p_ref[well_conditioned].log(), rtol=0, atol=1e-9)


def test_edge_bins_are_open():
    mu, log_s = torch.tensor([0.3, -0.98, 0.999], dtype=F64), torch.tensor([-1.0, -4.0, -6.0], dtype=F64)
    s = log_s.exp()
    p = discretized_logistic_log_probs(mu, log_s).exp()  # (3, 256)
    torch.testing.assert_close(p[:, 0], torch.sigmoid((-1 + 1 / 255 - mu) / s))
    torch.testing.assert_close(p[:, 255], 1 - torch.sigmoid((1 - 1 / 255 - mu) / s))
    torch.testing.assert_close(p[:, 1], torch.sigmoid((-1 + 3 / 255 - mu) / s) - torch.sigmoid((-1 + 1 / 255 - mu) / s))

    # ... and the same numbers come out of DiscretizedLogisticMixture.log_prob (no coupling).
    means = [[mu[0].item(), mu[1].item(), mu[2].item()]]
    params = pack_params([0.0], means, [log_s.tolist()], [[0.0, 0.0, 0.0]])
    x = torch.tensor([0.0, 0.0, 255.0]).reshape(1, 3, 1, 1)
    expected = p[0, 0].log() + p[1, 0].log() + p[2, 255].log()
    torch.testing.assert_close(DiscretizedLogisticMixture(params, 1).log_prob(x), expected.reshape(1))


def test_log_scale_is_clamped_at_minus_seven():
    mu = torch.tensor([0.1234], dtype=F64)
    torch.testing.assert_close(
        discretized_logistic_log_probs(mu, torch.tensor(-20.0, dtype=F64)),
        discretized_logistic_log_probs(mu, torch.tensor(-7.0, dtype=F64)),
    )


# --------------------------------------------------------------------------- #
# Mixture log_prob
# --------------------------------------------------------------------------- #
def _well_conditioned_params(n_mix: int, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random params (B, 10L, H, W) whose coupled means sit near x, so every probability is > 1e-4."""
    L, (B, _, H, W) = n_mix, x.shape
    xs = x.to(F64) / 127.5 - 1  # (B, 3, H, W)
    raw_coeffs = torch.randn(B, L, 3, H, W, generator=g, dtype=F64)
    a, b, c = torch.tanh(raw_coeffs).unbind(2)  # (B, L, H, W)
    shift = torch.stack([0 * a, a * xs[:, None, 0], b * xs[:, None, 0] + c * xs[:, None, 1]], 2)  # (B, L, 3, H, W)
    means = xs[:, None] - shift + 0.3 * torch.rand(B, L, 3, H, W, generator=g, dtype=F64) - 0.15
    log_scales = -3 * torch.rand(B, L, 3, H, W, generator=g, dtype=F64)
    logits = torch.randn(B, L, H, W, generator=g, dtype=F64)
    return torch.cat([logits, means.flatten(1, 2), log_scales.flatten(1, 2), raw_coeffs.flatten(1, 2)], 1)


@pytest.mark.parametrize("n_mix", [1, 3])
def test_mixture_log_prob_matches_reference(n_mix):
    g = torch.Generator().manual_seed(n_mix)
    x = torch.randint(0, 256, (2, 3, 2, 3), generator=g)
    x[0, 0, 0, 0], x[1, 2, 1, 2], x[0, 1, 1, 1] = 0, 255, 255  # include edge bins
    params = _well_conditioned_params(n_mix, x, g)
    expected = ref_image_log_prob(params, n_mix, x)  # (2,)

    dist = DiscretizedLogisticMixture(params, n_mix)
    assert dist.batch_shape == (2,) and dist.event_shape == (3, 2, 3)
    torch.testing.assert_close(dist.log_prob(x), expected, rtol=0, atol=1e-9)  # uint8-like ints
    torch.testing.assert_close(dist.log_prob(x.to(torch.uint8)), expected, rtol=0, atol=1e-9)
    dist32 = DiscretizedLogisticMixture(params.float(), n_mix)
    torch.testing.assert_close(dist32.log_prob(x.float()).double(), expected, rtol=1e-5, atol=1e-3)


EXTREMES = [  # per-component (mean, log-scale) of the channel being summed over
    ([-5.0, 5.0, 0.2], [-7.0, -7.0, 3.0]),
    ([0.1234, -0.9, 0.99], [-7.0, -6.5, -7.0]),
    ([-1.0, 1.0, 0.0], [3.0, -7.0, -3.0]),
]


@pytest.mark.parametrize("channel", [0, 1, 2])
@pytest.mark.parametrize("extreme", EXTREMES)
def test_mixture_sums_to_one_per_subpixel(channel, extreme):
    """Sum exp(log_prob) over the 256 values of one sub-pixel, conditioning on fixed other colours.

    The varying colour c gets extreme per-component parameters and per-component
    coupling to the earlier colours; the other colours share their parameters
    across components and c does not feed into them, so
    p(x) = P_mix(c = v | earlier) * Q(other colours), with Q computed here by the reference.
    """
    g = torch.Generator().manual_seed(channel)
    L = 3
    fixed = [100, 30, 200]  # the values of the colours that do not vary
    means = [[0.3 * torch.rand(1, generator=g).item() - 0.1 for _ in range(3)] for _ in range(L)]
    log_scales = [[0.0, 0.0, 0.0] for _ in range(L)]
    shared = torch.randn(3, generator=g).tolist()  # raw alpha (R->G), beta (R->B), gamma (G->B)
    coeffs = [list(shared) for _ in range(L)]
    targets = {0: [], 1: [0], 2: [1, 2]}[channel]  # couplings INTO the varying colour
    sources = {0: [0, 1], 1: [2], 2: []}[channel]  # couplings OUT OF the varying colour
    for k in range(L):
        means[k][channel], log_scales[k][channel] = extreme[0][k], extreme[1][k]
        for j in targets:
            coeffs[k][j] = torch.randn(1, generator=g).item() * 2
        for j in sources:
            coeffs[k][j] = 0.0
    for k in range(1, L):  # other colours: identical across components
        for c in range(3):
            if c != channel:
                means[k][c] = means[0][c]
    params = pack_params(torch.randn(L, generator=g).tolist(), means, log_scales, coeffs)

    x = torch.tensor(fixed, dtype=F64).reshape(1, 3, 1, 1).repeat(256, 1, 1, 1)
    x[:, channel, 0, 0] = VALUES
    log_p = DiscretizedLogisticMixture(params, L).log_prob(x)  # (256,)

    # Q(other colours) from the reference; their means use only the fixed values.
    xr, xg = fixed[0] / 127.5 - 1, fixed[1] / 127.5 - 1
    a, b, c = (math.tanh(t) for t in coeffs[0])
    mu_other = {0: means[0][0], 1: means[0][1] + a * xr, 2: means[0][2] + b * xr + c * xg}
    log_q = sum(ref_probs(torch.tensor(mu_other[o], dtype=F64), torch.tensor(1.0, dtype=F64))[fixed[o]].log() for o in range(3) if o != channel)
    total = (log_p - log_q).exp().sum().item()
    assert abs(total - 1) < 1e-5


def test_extreme_parameters_give_finite_values_and_gradients():
    L = 2
    params = torch.zeros(4, 10 * L, 3, 3, dtype=torch.float32)
    params[:, L : 4 * L] = torch.tensor([-5.0, 5.0, 0.5, -0.5, 1.0, -1.0]).reshape(1, 6, 1, 1)
    params[:, 4 * L : 7 * L] = torch.tensor([-20.0, -7.0, 3.0, -7.0, 0.0, 3.0]).reshape(1, 6, 1, 1)
    params[:, 7 * L :] = 10.0
    params.requires_grad_(True)
    x = torch.randint(0, 256, (4, 3, 3, 3)).float()
    x[0] = 0
    x[1] = 255
    log_p = DiscretizedLogisticMixture(params, L).log_prob(x)
    assert log_p.shape == (4,) and torch.isfinite(log_p).all()
    log_p.sum().backward()
    assert torch.isfinite(params.grad).all()


def test_fallback_uses_midbin_pdf_for_tiny_probabilities():
    mu, log_s = torch.tensor(0.0, dtype=F64), torch.tensor(-5.0, dtype=F64)
    log_p = discretized_logistic_log_probs(mu, log_s)
    v = 160  # (x - mu) / s ~ 37: bin mass ~1e-16, far below PixelCNN++'s 1e-5 threshold
    z = (v / 127.5 - 1 - mu) / log_s.exp()
    log_pdf = -z - log_s - 2 * torch.log1p(torch.exp(-z))  # logistic log-density at the bin centre
    torch.testing.assert_close(log_p[v], log_pdf - math.log(127.5))


# --------------------------------------------------------------------------- #
# Sampling and mean
# --------------------------------------------------------------------------- #
def _chi_square(samples: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    """Pearson chi-square of integer samples against probs (256,), merging bins to expected >= 5."""
    n = samples.numel()
    counts = torch.bincount(samples.long(), minlength=256).double()
    expected = probs * n
    stat, dof, e_acc, c_acc = 0.0, -1, 0.0, 0.0
    for e, c in zip(expected.tolist(), counts.tolist()):
        e_acc, c_acc = e_acc + e, c_acc + c
        if e_acc >= 5:
            stat, dof, e_acc, c_acc = stat + (c_acc - e_acc) ** 2 / e_acc, dof + 1, 0.0, 0.0
    return stat + c_acc, dof  # leftover tail has expected < 5: count it harshly


def test_samples_match_probabilities():
    means = [[-0.5, 0.2, 0.1], [0.4, -0.3, 0.6], [0.99, 0.0, -0.99]]
    log_scales = [[-4.0, -3.0, -2.0], [-2.5, -4.5, -3.5], [-3.0, -2.0, -5.0]]
    coeffs = [[0.8, -0.5, 1.2], [-1.0, 0.7, 0.3], [0.2, 0.2, -0.6]]
    mix_logits = [0.3, -0.2, 0.1]
    params = pack_params(mix_logits, means, log_scales, coeffs)
    torch.manual_seed(1234)
    n = 20000
    x = DiscretizedLogisticMixture(params.float(), 3).sample((n,))  # (n, 1, 3, 1, 1)
    assert x.shape == (n, 1, 3, 1, 1) and x.is_floating_point()
    assert (x == x.round()).all() and x.min() >= 0 and x.max() <= 255
    x = x.reshape(n, 3)

    # Exact colour marginals from the reference: sum over components and earlier colours.
    weights = torch.softmax(torch.tensor(mix_logits, dtype=F64), 0)
    marg = torch.zeros(3, 256, dtype=F64)
    for k in range(3):
        m, s = torch.tensor(means[k], dtype=F64), torch.tensor(log_scales[k], dtype=F64).exp()
        a, b, c = torch.tanh(torch.tensor(coeffs[k], dtype=F64))
        xs = VALUES / 127.5 - 1
        p_r = ref_probs(m[0], s[0])  # (256,)  over r
        p_g = ref_probs(m[1] + a * xs, s[1])  # (256 r, 256 g)
        p_b = ref_probs(m[2] + b * xs[:, None] + c * xs[None, :], s[2])  # (256 r, 256 g, 256 b)
        joint_rg = p_r[:, None] * p_g  # (r, g)
        marg[0] += weights[k] * p_r
        marg[1] += weights[k] * joint_rg.sum(0)
        marg[2] += weights[k] * torch.einsum("rg,rgb->b", joint_rg, p_b)
    for c in range(3):
        stat, dof = _chi_square(x[:, c], marg[c])
        assert dof >= 10
        assert stat < dof + 6 * math.sqrt(2 * dof), f"colour {c}: chi2 {stat:.1f} with {dof} dof"


def test_sample_shapes():
    params = torch.randn(2, 20, 4, 5)
    dist = DiscretizedLogisticMixture(params, 2)
    assert dist.sample().shape == (2, 3, 4, 5)
    assert dist.sample((7,)).shape == (7, 2, 3, 4, 5)


def test_mean_is_exact_without_coupling():
    means = [[-0.5, 0.2, 0.99], [0.4, -1.3, 0.0]]
    log_scales = [[-2.0, 0.5, -3.0], [-1.0, -4.0, 1.0]]
    params = pack_params([0.7, -0.4], means, log_scales, [[0.0] * 3, [0.0] * 3])
    mean = DiscretizedLogisticMixture(params, 2).mean  # (1, 3, 1, 1)
    w = torch.softmax(torch.tensor([0.7, -0.4], dtype=F64), 0)
    expected = sum(
        w[k] * (ref_probs(torch.tensor(means[k], dtype=F64), torch.tensor(log_scales[k], dtype=F64).exp()) * VALUES).sum(-1) for k in range(2)
    )
    torch.testing.assert_close(mean.reshape(3), expected, rtol=0, atol=1e-6)


def test_the_mean_of_white_components_stays_within_0_and_255():
    """Three components all far above white: each expects 255, and their float32 weighted average must not
    come out at 255.00002 (chapter 9 checks the range of the shipped model's means)."""
    params = torch.zeros(1, 30, 64, 64)
    params[:, :3] = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))   # mixture logits
    params[:, 3:12] = 5.0                                                                # means, far above 1
    params[:, 12:21] = -7.0                                                              # log-scales
    mean = DiscretizedLogisticMixture(params, 3).mean                                    # (1, 3, 64, 64)
    assert mean.max() <= 255.0 and (mean == 255.0).float().mean() > 0.5


def test_mean_with_coupling_is_close_to_monte_carlo():
    params = pack_params([0.0], [[-0.2, 0.1, 0.05]], [[-3.0, -3.0, -3.0]], [[0.8, -0.6, 0.9]])
    dist = DiscretizedLogisticMixture(params, 1)
    torch.manual_seed(0)
    mc = dist.sample((20000,)).mean(0)  # (1, 3, 1, 1)
    assert (dist.mean - mc).abs().max() < 0.5  # levels; scales are ~6 levels, away from the edges
    assert dist.mean.min() >= 0 and dist.mean.max() <= 255


# --------------------------------------------------------------------------- #
# Bernoulli
# --------------------------------------------------------------------------- #
def test_bernoulli_log_prob_is_minus_bce_and_mean_is_sigmoid():
    torch.manual_seed(0)
    logits = torch.randn(4, 1, 5, 6) * 4
    x = torch.bernoulli(torch.full((4, 1, 5, 6), 0.4))
    dist = BernoulliImage(logits)
    assert dist.batch_shape == (4,) and dist.event_shape == (1, 5, 6)
    expected = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=(1, 2, 3))
    torch.testing.assert_close(dist.log_prob(x), expected)
    torch.testing.assert_close(dist.log_prob(x.bool()), expected)
    torch.testing.assert_close(dist.mean, torch.sigmoid(logits))


def test_bernoulli_broadcasts_leading_dims():
    logits = torch.randn(3, 2, 4, 4)
    x = torch.bernoulli(torch.full((5, 3, 2, 4, 4), 0.5))
    log_p = BernoulliImage(logits).log_prob(x)
    assert log_p.shape == (5, 3)
    torch.testing.assert_close(log_p[2], BernoulliImage(logits).log_prob(x[2]))


def test_bernoulli_samples():
    torch.manual_seed(0)
    logits = torch.tensor([-2.0, 0.0, 3.0]).reshape(1, 1, 1, 3).expand(2, 1, 1, 3)
    s = BernoulliImage(logits).sample((4000,))  # (4000, 2, 1, 1, 3)
    assert s.shape == (4000, 2, 1, 1, 3)
    assert ((s == 0) | (s == 1)).all()
    torch.testing.assert_close(s.mean(0), torch.sigmoid(logits), atol=0.03, rtol=0)


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "bad, match",
    [(0.5, "binary"), (2.0, "binary"), (-1.0, "binary"), (float("nan"), "NaN"), (float("inf"), "NaN or inf")],
)
def test_bernoulli_rejects_bad_values(bad, match):
    x = torch.zeros(2, 1, 3, 3)
    x[1, 0, 2, 1] = bad
    with pytest.raises(ValueError, match=match):
        BernoulliImage(torch.zeros(2, 1, 3, 3)).log_prob(x)


def test_bernoulli_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="channels"):
        BernoulliImage(torch.zeros(2, 1, 3, 3)).log_prob(torch.zeros(2, 3, 3, 3))


@pytest.mark.parametrize(
    "bad, match",
    [(-1.0, r"\[0, 255\]"), (256.0, r"\[0, 255\]"), (3.5, "non-integer"), (float("nan"), "NaN"), (-float("inf"), "inf")],
)
def test_dlogistic_rejects_bad_values(bad, match):
    x = torch.full((2, 3, 4, 4), 17.0)
    x[0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match=match):
        DiscretizedLogisticMixture(torch.zeros(2, 20, 4, 4), 2).log_prob(x)


def test_dlogistic_rejects_wrong_channel_count():
    dist = DiscretizedLogisticMixture(torch.zeros(2, 10, 4, 4), 1)
    with pytest.raises(ValueError, match="channels"):
        dist.log_prob(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="10\\*n_mix"):
        DiscretizedLogisticMixture(torch.zeros(2, 10, 4, 4), 2)


def test_nan_params_rejected():
    with pytest.raises(ValueError):
        DiscretizedLogisticMixture(torch.full((1, 10, 2, 2), float("nan")), 1)


# --------------------------------------------------------------------------- #
# From decoder states
# --------------------------------------------------------------------------- #
def test_n_likelihood_channels():
    assert n_likelihood_channels("bernoulli") == 1
    assert n_likelihood_channels("bernoulli", image_channels=3) == 3
    assert n_likelihood_channels("dlogistic") == 10
    assert n_likelihood_channels("dlogistic", n_mix=5, image_channels=3) == 50


def test_likelihood_from_state_reads_leading_channels():
    state = torch.randn(2, 64, 5, 5)
    bern = likelihood_from_state(state, "bernoulli")
    assert isinstance(bern, BernoulliImage)
    torch.testing.assert_close(bern.logits, state[:, :1])

    dlog = likelihood_from_state(state, "dlogistic", n_mix=3)
    assert isinstance(dlog, DiscretizedLogisticMixture) and dlog.event_shape == (3, 5, 5)
    x = torch.randint(0, 256, (2, 3, 5, 5))
    torch.testing.assert_close(dlog.log_prob(x), DiscretizedLogisticMixture(state[:, :30], 3).log_prob(x))


def test_likelihood_from_state_errors():
    with pytest.raises(ValueError, match="bernoulli.*dlogistic"):
        likelihood_from_state(torch.zeros(1, 16, 4, 4), "gaussian")
    with pytest.raises(ValueError, match="at least 30"):
        likelihood_from_state(torch.zeros(1, 16, 4, 4), "dlogistic", n_mix=3)
    with pytest.raises(ValueError, match="at least 3"):
        likelihood_from_state(torch.zeros(1, 2, 4, 4), "bernoulli", image_channels=3)


# --------------------------------------------------------------------------- #
# Shapes at the edges (each kills a mutant the tests above let live: tools/mutation_score.py likelihoods)
# --------------------------------------------------------------------------- #
def test_a_single_unbatched_image_is_one_event():
    """(C, H, W) logits, params, images and states are one image: log_prob gives a scalar."""
    x = torch.randint(0, 2, (1, 4, 5)).float()
    logits = torch.randn(1, 4, 5)
    torch.testing.assert_close(BernoulliImage(logits).log_prob(x), BernoulliImage(logits[None]).log_prob(x[None])[0])
    params, v = torch.randn(10, 4, 5), torch.randint(0, 256, (3, 4, 5))
    torch.testing.assert_close(DiscretizedLogisticMixture(params, 1).log_prob(v),
                               DiscretizedLogisticMixture(params[None], 1).log_prob(v[None])[0])
    assert likelihood_from_state(torch.randn(3, 4, 5), "bernoulli").log_prob(x).shape == ()


def test_a_state_with_exactly_the_channels_the_likelihood_reads_is_enough():
    assert likelihood_from_state(torch.zeros(2, 10, 4, 4), "dlogistic").event_shape == (3, 4, 4)
    assert likelihood_from_state(torch.zeros(2, 1, 4, 4), "bernoulli").event_shape == (1, 4, 4)


def test_extra_leading_dimensions_are_batch_dimensions():
    dist = DiscretizedLogisticMixture(torch.randn(2, 3, 20, 4, 5), 2)              # (S, B, 10 L, H, W)
    assert dist.batch_shape == (2, 3) and dist.event_shape == (3, 4, 5)
    assert dist.log_prob(torch.randint(0, 256, (2, 3, 3, 4, 5))).shape == (2, 3)


def test_support_checks_whole_images():
    x = torch.zeros(2, 1, 3, 3)
    x[1, 0, 1, 1] = 2.0
    assert BernoulliImage(torch.zeros(2, 1, 3, 3)).support.check(x).tolist() == [True, False]
    v = torch.full((3, 3, 2, 2), 255.0)
    v[1, 2, 1, 0], v[2, 0, 0, 0] = 256.0, 0.0
    assert DiscretizedLogisticMixture(torch.zeros(3, 10, 2, 2), 1).support.check(v).tolist() == [True, False, True]


def test_n_mix_must_be_a_positive_int():
    for bad in (2.0, 0, -1):
        with pytest.raises(ValueError, match="positive int"):
            DiscretizedLogisticMixture(torch.zeros(1, 20, 2, 2), bad)


def test_boolean_images_are_refused_by_the_mixture():
    with pytest.raises(ValueError, match="dtype"):
        DiscretizedLogisticMixture(torch.zeros(1, 10, 2, 2), 1).log_prob(torch.ones(1, 3, 2, 2, dtype=torch.bool))


def test_mixture_mean_is_computed_per_pixel():
    """The mean of a (1, 20, 2, 3) mixture equals the means of its six pixels computed one by one."""
    params = torch.randn(1, 20, 2, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    mean = DiscretizedLogisticMixture(params, 2).mean                              # (1, 3, 2, 3)
    for i in range(2):
        for j in range(3):
            one = DiscretizedLogisticMixture(params[..., i:i + 1, j:j + 1], 2).mean[..., 0, 0]
            torch.testing.assert_close(mean[..., i, j], one)
