"""Tests for vnca_tutorial.model (VNCA), vae (the ELBO), baseline (ConvVAE) and checks (input errors)."""
import pytest
import torch

from vnca_tutorial.baseline import ConvVAE
from vnca_tutorial.config import PRESETS, BaselineConfig, DoublingConfig, NonDoublingConfig
from vnca_tutorial.model import VNCA, build_model



TINY_BERN = DoublingConfig(z_dim=8, hidden=8, n_blocks=1, n_doublings=2, image_size=8,
                           steps_per_stage=2, encoder_channels=4)
TINY_RGB = DoublingConfig(dataset="celeba", likelihood="dlogistic", image_channels=3, z_dim=12, hidden=8,
                          n_blocks=1, n_doublings=2, image_size=8, steps_per_stage=2, encoder_channels=4)
TINY_ND = NonDoublingConfig(z_dim=8, hidden=8, image_size=8, min_steps=2, max_steps=3, encoder_channels=4)
TINY_BASE = BaselineConfig(z_dim=8, image_size=16, encoder_channels=4)
# image size 32 (the MNIST size), everything else tiny: only used where the input is rejected
TINY_32 = DoublingConfig(z_dim=4, hidden=4, n_blocks=0, steps_per_stage=1, encoder_channels=2)
TINY_32_RGB = TINY_32.replace(likelihood="dlogistic", image_channels=3, z_dim=10, dataset="celeba")


def binary(b, size=8, seed=0):
    return (torch.rand(b, 1, size, size, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def rgb(b, size=8, seed=0):
    return torch.randint(0, 256, (b, 3, size, size), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


def make(cfg, seed=0, randomise_out=True):
    torch.manual_seed(seed)
    model = build_model(cfg)
    if randomise_out and isinstance(model, VNCA):   # make the NCA do something
        with torch.no_grad():
            for p in model.decoder.nca.update_net.out.parameters():
                p.normal_(0, 0.05)
    return model


def test_parameter_count_of_the_paper_mnist_vnca():
    model = build_model("mnist_doubling")
    # encoder: 5x5 convs 1->32->64->128->256->512, linear 512*2*2 -> 2*256; decoder: u (1,182,208)
    encoder = ((1 * 32 * 25 + 32) + (32 * 64 * 25 + 64) + (64 * 128 * 25 + 128) + (128 * 256 * 25 + 256)
               + (256 * 512 * 25 + 512) + (512 * 4 * 512 + 512))
    assert model.n_parameters() == encoder + 1_182_208 == 6_585_088
    assert sum(p.numel() for p in model.decoder.parameters()) == 1_182_208


@pytest.mark.parametrize("cfg,data", [(TINY_BERN, binary), (TINY_RGB, rgb), (TINY_ND, binary),
                                      (TINY_BASE, binary)])
def test_elbo_is_per_example(cfg, data):
    model = make(cfg)
    x = data(3, cfg.image_size)
    out = model.elbo(x)
    for t in out:
        assert t.shape == (3,)
        assert torch.isfinite(t).all()
    assert (out.kl >= 0).all()                          # analytic KL
    assert (out.reconstruction <= 0).all()              # log-probabilities of discrete images
    torch.testing.assert_close(out.elbo, out.reconstruction - cfg.beta * out.kl)
    torch.manual_seed(3)
    e = model.elbo(x).elbo
    torch.manual_seed(3)
    torch.testing.assert_close(model(x), -e.mean())     # the loss is minus the mean ELBO


def test_beta_weighting():
    model = make(TINY_BERN)
    x = binary(4)
    torch.manual_seed(1)
    a = model.elbo(x, beta=1.0)
    torch.manual_seed(1)
    b = model.elbo(x, beta=5.0)
    torch.testing.assert_close(a.reconstruction, b.reconstruction)
    torch.testing.assert_close(a.kl, b.kl)
    torch.testing.assert_close(a.elbo - b.elbo, 4.0 * a.kl)
    # the config's beta is the default
    heavy = make(TINY_BERN.replace(beta=100.0))
    torch.manual_seed(1)
    c = heavy.elbo(x)
    torch.testing.assert_close(c.elbo, c.reconstruction - 100.0 * c.kl)


def test_analytic_and_sampled_kl_agree_on_average():
    model = make(TINY_BERN)
    x = binary(2)
    torch.manual_seed(0)
    analytic = model.elbo(x).kl
    with torch.no_grad():                                 # 300 draws of z for each example at once
        sampled = model.elbo(x.repeat(300, 1, 1, 1), analytic_kl=False).kl.view(300, 2).mean(0)
    torch.testing.assert_close(sampled, analytic, rtol=0.0, atol=0.5)


# --- input errors ---------------------------------------------------------------------------------
def messages(model, x):
    """The ValueError messages of elbo and iwae for x."""
    out = []
    for call in (lambda: model.elbo(x), lambda: model.iwae(x, k=2)):
        with pytest.raises(ValueError) as err:
            call()
        out.append(str(err.value))
    return out


def test_wrong_image_size_is_explained():
    model = make(TINY_32, randomise_out=False)
    for msg in messages(model, torch.zeros(2, 1, 28, 28)):
        assert "28x28" in msg and "32x32" in msg and "(B, 1, 32, 32)" in msg


def test_wrong_channel_count_is_explained():
    model = make(TINY_32, randomise_out=False)
    for msg in messages(model, torch.zeros(2, 3, 32, 32)):
        assert "channel" in msg and "(B, 1, 32, 32)" in msg
    rgb_model = make(TINY_32_RGB, randomise_out=False)
    for msg in messages(rgb_model, torch.zeros(2, 1, 32, 32)):
        assert "channel" in msg and "(B, 3, 32, 32)" in msg


def test_missing_batch_dimension_is_explained():
    model = make(TINY_32, randomise_out=False)
    for msg in messages(model, torch.zeros(1, 32, 32)):
        assert "(B, 1, 32, 32)" in msg


def test_non_binary_values_for_bernoulli():
    model = make(TINY_BERN)
    x = torch.rand(2, 1, 8, 8)
    for msg in messages(model, x):
        assert "binary" in msg and "{0, 1}" in msg
    for msg in messages(model, binary(2) * 255):                # 8-bit images to a Bernoulli model
        assert "binary" in msg


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("cfg,data", [(TINY_BERN, binary), (TINY_RGB, rgb)])
def test_nan_and_inf_are_rejected(bad, cfg, data):
    model = make(cfg)
    x = data(2).float()
    x[1, 0, 3, 4] = bad
    for msg in messages(model, x):
        assert "NaN" in msg or "inf" in msg


def test_rgb_images_scaled_to_zero_one_are_refused_but_8_bit_ones_are_not():
    """0/1 floats to a discretized-logistic model are images scaled to [0, 1], not 8-bit values (issue 17)."""
    model = make(TINY_RGB)
    scaled = binary(2).expand(-1, 3, -1, -1).float()                      # values 0. and 1.
    for msg in messages(model, scaled):
        assert "0 and 1" in msg and "255" in msg
    for ok in (scaled.to(torch.uint8), scaled * 255, torch.zeros_like(scaled)):   # 8-bit, or one level
        assert torch.isfinite(model.elbo(ok).elbo).all()


@pytest.mark.parametrize("fill", [-1.0, 256.0, 0.5])
def test_out_of_range_rgb_is_rejected(fill):
    model = make(TINY_RGB)
    x = rgb(2).float()
    x[0, 2, 1, 1] = fill
    for msg in messages(model, x):
        assert "[0, 255]" in msg


def test_rescaled_rgb_is_rejected():
    model = make(TINY_RGB)
    for msg in messages(model, rgb(2).float() / 127.5 - 1.0):          # [-1, 1] instead of 0..255
        assert "[0, 255]" in msg


def test_valid_rgb_as_uint8_and_float_give_the_same_elbo():
    model = make(TINY_RGB)
    x = rgb(2)
    torch.manual_seed(0)
    a = model.elbo(x).elbo
    torch.manual_seed(0)
    b = model.elbo(x.float()).elbo
    torch.testing.assert_close(a, b)


def test_wrong_model_for_the_config():
    with pytest.raises(ValueError, match="BaselineConfig"):
        ConvVAE(PRESETS["mnist_doubling_cpu"])
    with pytest.raises(ValueError, match="ConvVAE"):
        VNCA(TINY_BASE)


# --- sampling and growth ----------------------------------------------------------------------------
def test_sample_bernoulli():
    model = make(TINY_BERN)
    mean = model.sample(3)
    assert mean.shape == (3, 1, 8, 8)
    assert ((mean >= 0) & (mean <= 1)).all()
    draw = model.sample(3, mean=False)
    assert draw.shape == (3, 1, 8, 8)
    assert ((draw == 0) | (draw == 1)).all()
    a = model.sample(2, generator=torch.Generator().manual_seed(5))
    b = model.sample(2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert not a.requires_grad


def test_sample_rgb():
    model = make(TINY_RGB)
    mean = model.sample(2)
    assert mean.shape == (2, 3, 8, 8)
    assert ((mean >= 0) & (mean <= 255)).all()
    draw = model.sample(2, mean=False)
    assert draw.shape == (2, 3, 8, 8)
    assert ((draw >= 0) & (draw <= 255)).all() and torch.equal(draw, draw.round())


def test_sample_nondoubling_and_baseline():
    nd = make(TINY_ND)
    assert nd.sample(2).shape == (2, 1, 8, 8)
    assert nd.sample(2, steps=2).shape == (2, 1, 8, 8)
    base = make(TINY_BASE)
    s = base.sample(2)
    assert s.shape == (2, 1, 16, 16) and ((s >= 0) & (s <= 1)).all()


def test_grow_doubling():
    model = make(TINY_BERN)
    z = torch.randn(2, 8)
    with torch.no_grad():
        states, infos = model.grow(z)
        final = model.decode(z)
    assert infos == model.decoder.schedule()
    assert len(states) == len(infos) == 1 + 2 * 3 + 2
    for s, info in zip(states, infos):
        assert s.shape == (2, 8, info.size, info.size)
    torch.testing.assert_close(states[-1], final)
    assert model.doubling


def test_grow_nondoubling_and_hook():
    model = make(TINY_ND)
    assert not model.doubling
    z = torch.randn(1, 8)
    with torch.no_grad():
        states, infos = model.grow(z, steps=2)
        assert len(states) == len(infos) == 3
        states, infos = model.grow(z)                   # default T = max_steps
        assert len(states) == len(infos) == 4
        states, _ = model.grow(z, on_step=lambda i, info, s: s * 0 if i == 1 else s)
    assert torch.count_nonzero(states[1]) == 0


def test_a_few_adam_steps_lower_the_loss():
    model = make(TINY_BERN, seed=0)
    x = torch.zeros(8, 1, 8, 8)
    x[:4, :, :, :4] = 1.0                                   # two simple patterns
    x[4:, :, :4, :] = 1.0
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_at_seed():
        torch.manual_seed(123)
        with torch.no_grad():
            return model(x).item()

    before = loss_at_seed()
    for step in range(30):
        torch.manual_seed(step)
        opt.zero_grad()
        loss = model(x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TINY_BERN.grad_clip)
        opt.step()
    after = loss_at_seed()
    assert after < before - 5.0, (before, after)


# --- the public API says what was wrong (issue 17) ------------------------------------------------
@pytest.mark.parametrize("call, needle", [
    (lambda m, x: m.iwae(x[:0], k=2), "empty batch"),
    (lambda m, x: m.elbo(x[:0]), "empty batch"),
    (lambda m, x: m.p_x_given_z(torch.zeros(2, 7)), r"\(B, 8\)"),
    (lambda m, x: m.p_x_given_z(torch.zeros(8)), "z\\[None\\]"),
    (lambda m, x: m.p_x_given_z(torch.zeros(2, 8, dtype=torch.long)), "float"),
    (lambda m, x: m.grow(torch.zeros(2, 7)), r"\(B, 8\)"),
    (lambda m, x: m.grow(torch.full((2, 8), float("nan"))), "NaN"),
    (lambda m, x: m.iwae(x, k=2.5), "k .*positive integer"),
    (lambda m, x: m.iwae(x, k=True), "k .*positive integer"),
    (lambda m, x: m.sample(0), "n .*positive integer"),
    (lambda m, x: m.elbo(x, beta=-1.0), "beta"),
    (lambda m, x: m.elbo(x, beta=float("nan")), "beta"),
])
def test_bad_api_input_is_a_value_error_that_names_what_was_expected(call, needle):
    from vnca_tutorial import get_preset
    from vnca_tutorial.model import build_model
    m = build_model(get_preset("mnist_doubling_cpu", z_dim=8, hidden=8, n_blocks=1, encoder_channels=4))
    with pytest.raises(ValueError, match=needle):
        call(m, torch.zeros(2, 1, 32, 32))


@pytest.mark.parametrize("device, needle", [("gpu", "is not a device"), ("tpu:0", "is not a device"),
                                            ("cuda", "no CUDA GPU"), ("cuda:3", "no CUDA GPU"),
                                            ("mps", "MPS backend is not available")])
def test_a_device_this_machine_lacks_is_a_clear_error_in_every_api_that_takes_one(device, needle, tmp_path):
    from vnca_tutorial import pretrained
    from vnca_tutorial.checks import check_device
    from vnca_tutorial.train import TrainSettings, train
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(ValueError, match=needle):
        check_device(device)
    with pytest.raises(ValueError, match=needle):
        pretrained.load("mnist_doubling_small", device=device)
    with pytest.raises(ValueError, match=needle):
        train(TINY_ND, torch.zeros(4, 1, 8, 8), TrainSettings(run_dir=str(tmp_path), n_updates=1, device=device))
    assert not any(tmp_path.iterdir())        # refused before anything was written
    assert check_device("cpu") == torch.device("cpu")
