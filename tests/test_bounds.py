"""Tests for vnca_tutorial.bounds and the importance-weighted bound of vnca_tutorial.vae."""
import math

import pytest
import torch
from torch.distributions import Normal

from vnca_tutorial.bounds import ELBO, bits_per_dim, log_mean_exp, split_sizes
from vnca_tutorial.config import DoublingConfig
from vnca_tutorial.model import build_model


TINY = DoublingConfig(z_dim=8, hidden=8, n_blocks=1, n_doublings=2, image_size=8, steps_per_stage=2,
                      encoder_channels=4)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(TINY)
    with torch.no_grad():                      # a decoder whose output depends strongly on z
        for p in m.decoder.nca.update_net.out.parameters():
            p.normal_(0, 0.3)
    return m


@pytest.fixture(scope="module")
def x():
    return (torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()


def by_hand(model, x, eps):
    """log p(x|z) + log p(z) - log q(z|x) for z = mean + std * eps, written out. eps (B, Z) -> (B,)."""
    mean, log_var = model.encoder(x)
    std = torch.exp(0.5 * log_var)
    z = mean + std * eps
    log_px_z = model.p_x_given_z(z).log_prob(x)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = Normal(mean, std).log_prob(z).sum(-1)
    return log_px_z + log_pz - log_qz


@torch.no_grad()
def test_iwae_with_one_sample_is_the_single_sample_elbo(model, x):
    b, zd = x.shape[0], TINY.z_dim
    # iwae draws eps (k, B, Z) from its generator
    iwae = model.iwae(x, k=1, generator=torch.Generator().manual_seed(11))
    eps = torch.randn((1, b, zd), generator=torch.Generator().manual_seed(11))[0]
    torch.testing.assert_close(iwae, by_hand(model, x, eps), rtol=1e-5, atol=1e-4)
    # elbo draws eps from torch's global generator (q.rsample); reseeding reproduces that draw
    torch.manual_seed(5)
    elbo = model.elbo(x, analytic_kl=False)
    torch.manual_seed(5)
    eps_global = torch.randn(b, zd)
    torch.testing.assert_close(elbo.elbo, by_hand(model, x, eps_global), rtol=1e-5, atol=1e-4)
    # so with the same draw the two estimators agree (global RNG feeds iwae when generator=None)
    torch.manual_seed(5)
    iwae_global = model.iwae(x, k=1)
    torch.testing.assert_close(iwae_global, elbo.elbo, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(iwae, iwae_global)          # different draws really differ


@torch.no_grad()
def test_iwae_is_above_the_elbo_and_grows_with_k(model, x):
    seeds = range(4)
    torch.manual_seed(0)
    elbo = torch.stack([model.elbo(x).elbo for _ in seeds]).mean()
    means = {}
    for k in (1, 8, 64):
        runs = [model.iwae(x, k=k, generator=torch.Generator().manual_seed(s)) for s in seeds]
        assert all(r.shape == (x.shape[0],) for r in runs)
        means[k] = torch.stack(runs).mean().item()
    assert means[64] >= elbo.item()
    assert means[8] >= elbo.item()
    assert means[1] <= means[8] <= means[64], means
    assert means[64] - means[1] > 1.0, means                # the bound really tightens here


@torch.no_grad()
@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_chunked_evaluation_agrees(model, x, chunk):
    whole = model.iwae(x, k=8, chunk=8, generator=torch.Generator().manual_seed(2))
    parts = model.iwae(x, k=8, chunk=chunk, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(parts, whole, rtol=0.0, atol=1e-4)
    default = model.iwae(x, k=8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(default, whole, rtol=0.0, atol=1e-4)


def test_iwae_is_differentiable(model, x):
    model.zero_grad()
    model.iwae(x[:2], k=2).mean().backward()
    assert model.encoder.linear.weight.grad is not None
    assert model.decoder.nca.update_net.perceive.weight.grad.abs().sum() > 0
    model.zero_grad()


# --- log_mean_exp, bits/dim, split_sizes -----------------------------------------------------------
def test_log_mean_exp_is_stable():
    big = log_mean_exp(torch.tensor([1000.0, 1000.0]))
    small = log_mean_exp(torch.tensor([-1000.0, -1000.0]))
    mixed = log_mean_exp(torch.tensor([1000.0, -1000.0]))
    assert torch.isfinite(big) and torch.isfinite(small)
    torch.testing.assert_close(big, torch.tensor(1000.0))
    torch.testing.assert_close(small, torch.tensor(-1000.0))
    torch.testing.assert_close(mixed, torch.tensor(1000.0 - math.log(2.0)))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_log_mean_exp_matches_float64(dim):
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(0)) * 10
    direct = torch.log(torch.exp(x.double()).mean(dim=dim))
    torch.testing.assert_close(log_mean_exp(x, dim=dim), direct.float(), rtol=1e-5, atol=1e-5)


def test_log_mean_exp_of_one_value_is_that_value():
    x = torch.tensor([[-3.25, 7.5]])
    assert torch.equal(log_mean_exp(x, dim=0), x[0])


def test_bits_per_dim():
    log_px = torch.tensor([-80.0, -1234.5])
    h, w, c = 32, 32, 3
    want = -log_px * math.log2(math.e) / (h * w * c)          # nats -> bits, per dimension
    torch.testing.assert_close(bits_per_dim(log_px, h * w * c), want)
    assert bits_per_dim(-math.log(2.0) * 784, 784) == pytest.approx(1.0)
    assert bits_per_dim(0.0, 10) == 0.0
    with pytest.raises(ValueError, match="H\\*W\\*C"):
        bits_per_dim(log_px, 0)
    assert bits_per_dim(-math.log(2.0), 1) == pytest.approx(1.0)   # one dimension is a valid image size


@pytest.mark.parametrize("k,chunk,want", [(128, 64, [64, 64]), (10, 3, [3, 3, 3, 1]), (5, 10, [5]),
                                          (1, 1, [1]), (7, 7, [7])])
def test_split_sizes(k, chunk, want):
    assert split_sizes(k, chunk) == want
    assert sum(split_sizes(k, chunk)) == k


@pytest.mark.parametrize("k,chunk", [(0, 4), (4, 0), (-1, 2)])
def test_split_sizes_rejects_non_positive(k, chunk):
    with pytest.raises(ValueError):
        split_sizes(k, chunk)


def test_elbo_tuple_fields():
    e = ELBO(torch.zeros(2), torch.ones(2), torch.ones(2))
    assert e._fields == ("elbo", "reconstruction", "kl")


# --- against independent computations (issue 17: a wrong KL weight or a dropped - log k must fail) ------
@torch.no_grad()
def test_the_elbo_kl_is_the_closed_form_gaussian_kl_at_a_size_where_it_matters(model, x, monkeypatch):
    mean = torch.linspace(-2.0, 2.0, 4 * TINY.z_dim).view(4, TINY.z_dim)       # (B, Z)
    log_var = torch.linspace(-3.0, 1.0, 4 * TINY.z_dim).view(4, TINY.z_dim)
    monkeypatch.setattr(model.encoder, "forward", lambda x: (mean, log_var))
    # KL(N(m, s^2) || N(0, 1)) = 1/2 sum(m^2 + s^2 - 1 - log s^2), written out independently of torch.distributions
    want = 0.5 * (mean ** 2 + log_var.exp() - 1.0 - log_var).sum(-1)          # (B,), several nats each
    assert (want > 1.0).all() and want.sum() > 30.0
    torch.manual_seed(0)
    out = model.elbo(x, beta=1.0)
    torch.testing.assert_close(out.kl, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.elbo, out.reconstruction - want, rtol=1e-5, atol=1e-4)
    torch.manual_seed(0)
    loss = model(x, beta=2.5)                                                  # the training loss
    torch.testing.assert_close(loss, -(out.reconstruction - 2.5 * want).mean(), rtol=1e-5, atol=1e-4)


@torch.no_grad()
def test_the_bound_with_many_samples_matches_log_px_by_quadrature_on_a_one_dimensional_latent():
    """With z in R^1, log p(x) = log of the integral of p(x|z) N(z; 0, 1) dz is a sum over a fine grid: an
    exact reference the k-sample bound must approach from below (a dropped - log k is 8.3 nats off)."""
    cfg = DoublingConfig(z_dim=1, hidden=8, n_blocks=1, n_doublings=2, image_size=8, steps_per_stage=2,
                         encoder_channels=4)
    torch.manual_seed(0)
    m = build_model(cfg)
    for p in m.decoder.nca.update_net.out.parameters():
        p.normal_(0, 0.3)                                  # p(x|z) depends strongly on z
    x = (torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    z = torch.linspace(-8.0, 8.0, 4001)                    # (G,)
    log_px_z = torch.stack([m.p_x_given_z(z[:, None]).log_prob(xi.expand(len(z), 1, 8, 8)) for xi in x])
    log_px = torch.logsumexp(log_px_z + Normal(0.0, 1.0).log_prob(z), dim=1) + math.log(z[1] - z[0])  # (3,)
    iwae = m.iwae(x, k=4096, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(iwae, log_px, rtol=0.0, atol=0.1)
    elbo = torch.stack([m.elbo(x).elbo for _ in range(64)]).mean(0)
    assert (elbo < log_px - 1.0).all()                     # the ELBO is a real bound below it


def test_the_default_bound_is_the_papers_k_128():
    import inspect
    from vnca_tutorial.vae import VAE
    assert inspect.signature(VAE.iwae).parameters["k"].default == 128


@pytest.mark.parametrize("batch, k, want", [(4, 10, [2, 2, 2, 2, 2]),   # 8 decoded images per chunk at most
                                            (3, 5, [2, 2, 1]),
                                            (100, 3, [1, 1, 1])])     # a batch over 8: one sample a time
def test_the_default_chunk_on_a_cpu_decodes_at_most_8_images_at_a_time(model, batch, k, want, monkeypatch):
    """iwae's default chunk keeps memory bounded and tensors in cache: on a CPU, k samples of a batch of B
    are decoded 8 // B at a time (at least one). The result does not depend on it
    (test_chunked_evaluation_agrees); time and memory do."""
    seen = []
    log_weights = model.log_weights

    def recording(x, eps, q, **kw):
        seen.append(eps.shape[0])
        return log_weights(x, eps, q, **kw)
    monkeypatch.setattr(model, "log_weights", recording)
    x = (torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    model.iwae(x, k=k)
    assert seen == want


@pytest.mark.parametrize("preset, overrides, batch, want", [
    ("mnist_doubling_cpu", {}, 8, 1), ("mnist_doubling_cpu", {}, 2, 4), ("mnist_doubling_cpu", {}, 16, 1),
    ("mnist_nondoubling_cpu", {"p_update": 0.5}, 8, 8),                  # random masks: 64 grids
    ("mnist_nondoubling_cpu", {"p_update": 1.0}, 8, 1)])        # T is random in training only
def test_the_default_chunk_keeps_random_decoders_at_64_grids(preset, overrides, batch, want):
    """A decoder that draws random numbers per call gives another draw with another chunk, so it keeps the
    chunk its card was measured with; deterministic decoders take the faster 8 grids on a CPU."""
    from vnca_tutorial.config import get_preset
    size = {"n_doublings": 2} if "nondoubling" not in preset else {}
    vae = build_model(get_preset(preset, image_size=8, z_dim=4, hidden=8, encoder_channels=2, **size, **overrides))
    assert vae.default_chunk(batch) == want


def test_colour_images_enter_the_encoder_scaled_to_minus_one_one():
    from vnca_tutorial.config import get_preset
    vae = build_model(get_preset("noto_doubling_cpu"))
    x = torch.tensor([0.0, 127.5, 255.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(vae.encoder_input(x)[0, :, 0, 0], torch.tensor([-1.0, 0.0, 1.0]))
    binary = build_model(TINY)
    ones = torch.ones(1, 1, 8, 8)
    assert torch.equal(binary.encoder_input(ones), ones)       # binary images go in as they are
