"""Tests for vnca_tutorial.widgets: growth explorer, damage lab, latent explorer, no-kernel animations.

Everything runs headless: the widgets' callbacks are plain methods. Slider speed is not asserted (the
test machine is shared and noisy); it is measured in chapter 11's notes instead.
"""
import re
import tempfile

import ipywidgets
import pytest
import torch

from vnca_tutorial import ConvVAE, VNCA, get_preset
from vnca_tutorial.config import NonDoublingConfig
from vnca_tutorial.toy import shapes
from vnca_tutorial.train import TrainSettings, train
from vnca_tutorial.viz import resize_nearest
from vnca_tutorial.widgets import (DamageLab, GrowthExplorer, LatentExplorer, brush_mask,
                                   damage_animation_html, growth_animation_html, prior_z, schedule)

torch.set_num_threads(1)  # tiny tensors: threads only contend on a loaded 2-core machine


def randomise_rule(model, seed=0, std=0.1):
    """Give the zero-initialised last layer random weights, so that every NCA step changes the state."""
    g = torch.Generator().manual_seed(seed)
    out = model.decoder.nca.update_net.out
    with torch.no_grad():
        out.weight.copy_(torch.randn(out.weight.shape, generator=g) * std)
        out.bias.copy_(torch.randn(out.bias.shape, generator=g) * std)
    return model.eval()


@pytest.fixture(scope="module")
def doubling():
    torch.manual_seed(0)
    return randomise_rule(VNCA(get_preset("mnist_doubling_cpu", z_dim=8, hidden=8, n_blocks=1,
                                          encoder_channels=4)))


@pytest.fixture(scope="module")
def nondoubling():
    torch.manual_seed(1)
    return randomise_rule(VNCA(get_preset("mnist_nondoubling_cpu", z_dim=8, hidden=8, min_steps=3,
                                          max_steps=6, encoder_channels=4)), seed=1)


@pytest.fixture(scope="module")
def conv():
    return ConvVAE(get_preset("mnist_baseline_cpu", z_dim=8, encoder_channels=4)).eval()


@pytest.fixture(scope="module")
def images():
    return (torch.rand(12, 1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.5).float()


def expected_frame(model, state):  # (C, S, S): what the explorer must show for a state
    return resize_nearest(model.likelihood(state).mean, model.config.image_size)[0]


# --- GrowthExplorer --------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["doubling", "nondoubling"])
def test_growth_frame_is_the_state_the_model_computes_at_that_step(which, request, images):
    model = request.getfixturevalue(which)
    explorer = GrowthExplorer(model, images)
    explorer.new_seed(3)
    assert torch.equal(explorer.z, prior_z(model, 1, 3))
    with torch.no_grad():
        states, infos = model.grow(explorer.z)
    assert len(explorer.frames) == len(states)
    for t in range(len(states)):
        explorer.set_step(t)
        assert explorer.current_info == infos[t]
        torch.testing.assert_close(explorer.current_frame(), expected_frame(model, states[t]))
        assert explorer.picture.value == explorer.frames[t]      # the displayed PNG is that frame
        assert explorer.current_sample().shape == explorer.current_frame().shape
        assert set(explorer.current_sample().unique().tolist()) <= {0.0, 1.0}
    # the frames really differ from step to step, so an off-by-one would be caught
    assert not torch.allclose(explorer.growth.means[-1], explorer.growth.means[-2])
    assert f"step {len(states) - 1} of {len(states) - 1}" in explorer.caption.value


def test_growth_slider_move_draws_the_frame(doubling):
    explorer = GrowthExplorer(doubling)
    explorer.slider.value = 7                      # what the browser (or Play) does
    assert explorer.step == 7 and explorer.picture.value == explorer.frames[7]
    assert "2×2 cells" in explorer.caption.value  # 8 steps per stage: step 7 is still at the seed size


def test_growth_from_a_test_image_uses_the_mean_of_q(doubling, images):
    explorer = GrowthExplorer(doubling, images)
    explorer.encode(5)
    with torch.no_grad():
        z = doubling.q_z_given_x(images[5:6]).mean
        final = expected_frame(doubling, doubling.grow(z)[0][-1])
    torch.testing.assert_close(explorer.z, z)
    torch.testing.assert_close(explorer.current_frame(), final)
    assert explorer.message == ""


# --- DamageLab ------------------------------------------------------------------------------------
def square(size, top, left, side):
    m = torch.zeros(size, size, dtype=torch.bool)
    m[top:top + side, left:left + side] = True
    return m


DAMAGES = {
    "right half": (dict(kind="right half"), None, lambda s: torch.arange(s).expand(s, s) >= s // 2),
    "square": (dict(kind="square", top=1, left=2, size=3), None, lambda s: square(s, 1, 2, 3)),
    "brush cells": (dict(), [(0, 0), (2, 3), (3, 1)],
                    lambda s: square(s, 0, 0, 1) | square(s, 2, 3, 1) | square(s, 3, 1, 1)),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("which,at_step", [("doubling", 20), ("nondoubling", 4)])
def test_damage_zeroes_exactly_the_chosen_cells(damage, which, at_step, request):
    model = request.getfixturevalue(which)
    settings, brush, expected = DAMAGES[damage]
    lab = DamageLab({which: model})
    lab.set_damage(at_step=at_step, **settings)
    if brush is not None:
        lab.set_brush(brush)
    assert lab.run(), lab.message
    r = lab.result
    size = schedule(model, None if which == "doubling" else lab.n_steps.value)[at_step].size
    if which == "doubling":
        assert size == 8                            # mid-growth: step 20 is in the 8x8 stage
    mask = expected(size)
    assert torch.equal(r.mask, mask)
    assert (r.state_before != 0).all()              # so that zeroing is visible
    assert (r.state_after[:, :, mask] == 0).all()   # every channel of every damaged cell
    assert torch.equal(r.state_after[:, :, ~mask], r.state_before[:, :, ~mask])
    # the damaged trajectory is the undamaged one up to the damage step, and differs after it
    assert torch.equal(r.damaged[:at_step], r.undamaged[:at_step])
    assert not torch.equal(r.damaged[at_step + 1:], r.undamaged[at_step + 1:])
    assert (r.errors[:at_step] == 0).all() and (r.errors[at_step:] > 0).all()


def test_with_stochastic_updates_both_growths_draw_the_same_updates():
    from vnca_tutorial.trajectories import damage_trajectories

    torch.manual_seed(2)
    model = randomise_rule(VNCA(get_preset("mnist_nondoubling_cpu", z_dim=8, hidden=8, min_steps=3, max_steps=6,
                                           encoder_channels=4, p_update=0.5)), seed=2)
    z, mask = torch.randn(3, 8), torch.zeros(32, 32, dtype=torch.bool)
    mask[:8, :8] = True
    r = damage_trajectories(model, z, mask, at_step=4)
    assert torch.equal(r.damaged[:4], r.undamaged[:4]) and (r.errors[:4] == 0).all()
    assert torch.equal(r.state_after[:, :, ~mask], r.state_before[:, :, ~mask])
    assert (r.errors[4:] > 0).all()
    # the updates are random: another call draws others (the caller's random state moves on)
    assert not torch.equal(damage_trajectories(model, z, mask, at_step=4).undamaged, r.undamaged)


def test_brush_mask_is_resampled_onto_the_grid_at_the_damage_step(doubling):
    brush = torch.zeros(8, 8, dtype=torch.bool)
    brush[0:2, 6:8] = True                          # the top-right corner, at brush resolution
    lab = DamageLab({"d": doubling})
    lab.set_brush(brush)
    assert [t.value for t in lab.toggles] == brush.flatten().tolist()  # the UI shows it
    lab.set_damage(at_step=30)                      # a 16x16 grid
    assert lab.run(), lab.message
    assert torch.equal(lab.result.mask, brush.repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert (lab.result.state_after[:, :, lab.result.mask] == 0).all()
    assert torch.equal(brush_mask(brush, 4), square(4, 0, 3, 1))   # coarser grid: any brushed pixel


def test_toggling_the_brush_grid_sets_the_brush(nondoubling):
    lab = DamageLab({"nd": nondoubling})
    lab.toggles[0].value = True                     # a click on the top-left toggle
    assert lab.kind.value == "brush"
    assert lab.run(), lab.message
    assert torch.equal(lab.result.mask, square(32, 0, 0, 4))   # one toggle = a 4x4 block of 32x32


def test_damage_lab_scores_the_data_image(doubling, nondoubling, images):
    lab = DamageLab({"d": doubling, "nd": nondoubling}, images)
    lab.set_source("test image", 2)
    lab.select("nd")
    assert lab.run(), lab.message
    ll = lab.result.log_likelihoods
    torch.testing.assert_close(lab.result.x, images[2:3])
    with torch.no_grad():
        z = nondoubling.q_z_given_x(images[2:3]).mean
        states, _ = nondoubling.grow(z, steps=lab.n_steps.value)
        torch.testing.assert_close(ll["before damage"],
                                   nondoubling.likelihood(states[lab.result.at_step]).log_prob(images[2:3]))
        torch.testing.assert_close(ll["undamaged, end"],
                                   nondoubling.likelihood(states[-1]).log_prob(images[2:3]))
    assert ll["just after damage"] is not None and "after recovery (damaged, end)" in ll
    # a doubling model damaged mid-growth is scored at the end of growth only
    lab.select("d")
    lab.set_damage(at_step=20)
    assert lab.run(), lab.message
    ll = lab.result.log_likelihoods
    assert ll["before damage"] is None and ll["just after damage"] is None
    with torch.no_grad():
        final = doubling.grow(doubling.q_z_given_x(images[2:3]).mean)[0][-1]
        torch.testing.assert_close(ll["undamaged, end"], doubling.likelihood(final).log_prob(images[2:3]))
    assert "only the ends of growth" in lab.scores.value


def test_a_pool_trained_nondoubling_vnca_recovers_from_damage():
    """Pool + damage training (chapter 8) for ~30 s, then: the error against the undamaged growth right
    after the damage must be higher than after the recovery steps. An untrained model (an identity rule)
    keeps its damaged cells at zero and fails this."""
    x = shapes()
    config = NonDoublingConfig(image_size=12, z_dim=8, hidden=32, min_steps=6, max_steps=12, batch_size=12,
                               pool_size=48, lr=5e-3, encoder_channels=4)
    with tempfile.TemporaryDirectory() as run_dir:
        model, _ = train(config, x, TrainSettings(run_dir=run_dir, n_updates=200, progress=False,
                                                  checkpoint_every=10 ** 9, seed=0))
    lab = DamageLab({"pool-trained": model.eval()}, x)
    assert (lab.n_steps.value, lab.at_step.value) == (24, 12)  # grown for max_steps, then as many again
    for index in (0, 13, 27):
        lab.set_source("test image", index)
        for damage in (dict(kind="right half"), dict(kind="square", top=0, left=0, size=6)):
            lab.set_damage(**damage)
            assert lab.run(), lab.message
            errors = lab.result.errors[:, 0]
            assert errors[12] > 0.05, "the damage must visibly change the image"
            assert errors[-1] < 0.8 * errors[12], f"no recovery: image {index}, {damage}, {errors.tolist()}"


# --- bad input gives a message, not an exception -----------------------------------------------
def test_growth_explorer_bad_input(conv, doubling, images):
    explorer = GrowthExplorer(conv, images)
    assert "no growth trajectory" in explorer.message and explorer.message_area.value
    assert explorer.seed_button.disabled and explorer.slider.disabled
    explorer.set_step(3)
    assert explorer.message
    explorer = GrowthExplorer(doubling, images)
    for bad in (lambda: explorer.set_step(10_000), lambda: explorer.encode(12), lambda: explorer.encode(-1)):
        frame = explorer.current_frame().clone()
        bad()
        assert explorer.message and explorer.message in explorer.message_area.value.replace("&#x27;", "'")
        assert torch.equal(explorer.current_frame(), frame)  # nothing changed
    explorer = GrowthExplorer(doubling)
    explorer.encode(0)
    assert "no test images" in explorer.message


@pytest.mark.parametrize("setup,expected", [
    (lambda lab: lab.set_brush([]), "brush is empty"),
    (lambda lab: lab.set_brush(torch.zeros(8, 8, dtype=torch.bool)), "brush is empty"),
    (lambda lab: lab.set_brush([(40, 0)]), "outside"),
    (lambda lab: lab.set_brush(torch.ones(5, 5, dtype=torch.bool)), "cannot be mapped"),
    (lambda lab: lab.set_damage(at_step=45), "past the end"),
    (lambda lab: lab.set_damage(at_step=-1), "before the start"),
    (lambda lab: lab.set_damage("square", top=32, left=0), "does not lie in"),
    (lambda lab: lab.set_damage("square", size=0), "does not lie in"),
    (lambda lab: lab.select("conv"), "no growth trajectory"),
    (lambda lab: (lab.select("nd"), lab.set_damage(steps=0)), "at least 1"),
    (lambda lab: (lab.set_source("test image", 99)), "out of range"),
])
def test_damage_lab_bad_input_gives_a_message(setup, expected, doubling, nondoubling, conv, images):
    lab = DamageLab({"d": doubling, "nd": nondoubling, "conv": conv}, images)
    assert lab.run()
    before = lab.result
    setup(lab)
    lab.run_button.click()                          # the UI path: no exception escapes either
    assert expected in lab.message, lab.message
    assert not lab.run() and expected in lab.message
    assert lab.message_area.value                    # shown in the widget
    assert lab.result is before or lab.result is None


def test_other_bad_input_gives_messages(doubling, images):
    lab = DamageLab({"d": doubling})
    lab.set_step(3)
    assert "run first" in lab.message
    lab.select("nope")
    assert "no model named" in lab.message
    lab.set_damage("fire")
    assert "unknown damage" in lab.message
    lab.set_source("test image", 0)
    assert "z can come from" in lab.message         # no images were given
    latent = LatentExplorer(doubling, None)
    assert "needs test images" in latent.message
    latent = LatentExplorer(doubling, images)
    frame = latent.current_frame().clone()
    latent.set_pair(0, 12)
    assert "out of range" in latent.message and torch.equal(latent.current_frame(), frame)
    latent.set_alpha(1.5)
    assert "[0, 1]" in latent.message
    latent.set_direction("PC 99")
    assert "no direction" in latent.message
    wrong_size = LatentExplorer(doubling, torch.zeros(4, 1, 28, 28))
    assert "32x32" in wrong_size.message


# --- LatentExplorer -------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["doubling", "conv"])
def test_latent_interpolation_decodes_between_the_two_encodings(which, request, images):
    model = request.getfixturevalue(which)
    latent = LatentExplorer(model, images, a=1, b=4)
    with torch.no_grad():
        z_a, z_b = model.q_z_given_x(images[[1]]).mean, model.q_z_given_x(images[[4]]).mean
        for alpha in (0.0, 0.3, 1.0):
            latent.set_alpha(alpha)
            z = (1 - alpha) * z_a + alpha * z_b
            torch.testing.assert_close(latent.current_z, z[0])
            torch.testing.assert_close(latent.current_frame(), model.p_x_given_z(z).mean[0],
                                       atol=1e-5, rtol=1e-4)
    assert len(latent.strip()) == 11


def test_latent_directions_are_principal_components(doubling, images):
    latent = LatentExplorer(doubling, images, a=2, b=3)
    pcs = torch.stack([latent.directions[f"PC {i}"][0] for i in (1, 2, 3)])
    torch.testing.assert_close(pcs @ pcs.T, torch.eye(3), atol=1e-5, rtol=0)
    latent.set_direction("PC 2")
    latent.set_step_size(1.5)
    d, sigma = latent.directions["PC 2"]
    with torch.no_grad():
        z = doubling.q_z_given_x(images[[2]]).mean[0] + 1.5 * sigma * d
        torch.testing.assert_close(latent.current_z, z)
        torch.testing.assert_close(latent.current_frame(), doubling.p_x_given_z(z[None]).mean[0],
                                   atol=1e-5, rtol=1e-4)
    latent.set_direction("z[3]")
    latent.set_step_size(0.0)
    torch.testing.assert_close(latent.current_z, doubling.q_z_given_x(images[[2]]).mean[0])


def test_every_widget_displays_an_ipywidget(doubling, images):
    for w in (GrowthExplorer(doubling), DamageLab({"d": doubling}), LatentExplorer(doubling, images)):
        assert isinstance(w.widget, ipywidgets.Widget)
        assert callable(w._ipython_display_)


# --- no-kernel animations -------------------------------------------------------------------------
def assert_self_contained_animation(page, n_frames):
    assert "<script>" in page and "function vncaAnimation()" in page   # the JS player, inline
    assert page.count("data:image/png;base64") == n_frames + 1       # every state, and the first shown
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)  # no CDN, nothing fetched


def test_growth_animation_html_is_self_contained(doubling):
    page = growth_animation_html(doubling, n=2, seed=1, scale=1)
    assert_self_contained_animation(page, len(doubling.decoder.schedule()))


def test_damage_animation_html_is_self_contained(nondoubling):
    page = damage_animation_html(nondoubling, damage="square", n=2, scale=1)
    assert_self_contained_animation(page, 2 * nondoubling.decoder.max_steps + 1)
    with pytest.raises(ValueError, match="past the end"):
        damage_animation_html(nondoubling, at_step=99)


def test_pictures_are_shown_at_their_own_size_not_stretched(doubling, images):
    """Each ipywidgets.Image gets the width and height of the PNG it shows (issue 16: a 326 px picture was
    drawn 949 px wide)."""
    import io
    from PIL import Image as PILImage

    def size(png: bytes) -> tuple[str, str]:
        w, h = PILImage.open(io.BytesIO(png)).size
        return str(w), str(h)
    explorer = GrowthExplorer(doubling)
    explorer.slider.value = 3
    assert (explorer.picture.width, explorer.picture.height) == size(explorer.frames[3])
    lab = DamageLab({"d": doubling})
    assert lab.run(), lab.message
    lab.slider.value = 5
    assert (lab.picture.width, lab.picture.height) == size(lab.frames[5])
    assert (lab.curve.width, lab.curve.height) == size(lab.bars[5])
    latent = LatentExplorer(doubling, images)
    assert (latent.picture.width, latent.picture.height) == size(latent.picture.value)


def test_play_and_slider_agree_so_a_saved_page_shows_the_step_its_caption_names(doubling):
    """In the browser jslink copies Play's value onto the slider when a saved (static) page loads; a Play
    left at 0 made the slider read 0 under a caption saying "step 44 of 44" (issue 16)."""
    explorer = GrowthExplorer(doubling)
    last = len(explorer.frames) - 1
    assert explorer.play.value == explorer.slider.value == explorer.step == last
    explorer.set_step(3)
    assert explorer.play.value == explorer.slider.value == 3
    lab = DamageLab({"d": doubling})
    assert lab.run(), lab.message
    assert lab.play.value == lab.slider.value == lab.step
