"""Tests for vnca_tutorial.nca: the doubling operator, the update network u, and one NCA step."""
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vnca_tutorial.nca import NCA, UpdateNetwork, double, elu, per_cell, reference_update

from helpers import randomise as _randomise

randomise = functools.partial(_randomise, std=0.2)   # this module's scale of random weights


# --- doubling -----------------------------------------------------------------------------------
def test_double_matches_kron():
    x = torch.randn(2, 3, 4, 5)
    y = double(x)
    assert y.shape == (2, 3, 8, 10)
    assert torch.equal(y, torch.kron(x, torch.ones(1, 1, 2, 2)))


def test_double_copies_each_cell_right_below_and_below_right():
    x = torch.arange(2 * 3 * 3 * 2, dtype=torch.float32).view(2, 3, 3, 2)
    y = double(x)
    for b in range(2):
        for c in range(3):
            for i in range(3):
                for j in range(2):
                    v = x[b, c, i, j]
                    for di in (0, 1):
                        for dj in (0, 1):
                            assert y[b, c, 2 * i + di, 2 * j + dj] == v


def test_double_channels_last_input_and_grad():
    x = torch.randn(1, 4, 2, 2).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = double(x)
    assert torch.equal(y, torch.kron(x.detach().contiguous(), torch.ones(1, 1, 2, 2)))
    y.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 4.0))  # every cell is copied four times


# --- the update network ---------------------------------------------------------------------------
def test_zero_initialised_last_layer_makes_first_step_identity():
    nca = NCA(channels=6, hidden=10, n_blocks=2)
    assert torch.count_nonzero(nca.update_net.out.weight) == 0
    assert torch.count_nonzero(nca.update_net.out.bias) == 0
    state = torch.randn(2, 6, 5, 5)
    assert torch.equal(nca.update_net(state), torch.zeros_like(state))
    assert torch.equal(nca.step(state), state)


@pytest.mark.parametrize("n_blocks", [0, 4])
def test_update_network_matches_nchw_convolutions(n_blocks):
    torch.manual_seed(0)
    net = UpdateNetwork(channels=7, hidden=12, n_blocks=n_blocks)
    randomise(net, seed=n_blocks)
    x = torch.randn(3, 7, 6, 5)
    got = net(x)
    want = reference_update(net, x)
    assert got.shape == x.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the input's memory format does not matter
    torch.testing.assert_close(net(x.contiguous(memory_format=torch.channels_last)), want,
                               rtol=1e-5, atol=1e-5)


def test_a_float64_step_stays_in_float64():
    """Exercise 7.1 runs the automaton in float64 to see influences below float32's round-off."""
    torch.manual_seed(0)
    nca = NCA(channels=5, hidden=8, n_blocks=1).double()
    randomise(nca.update_net, seed=3)
    x = torch.randn(2, 5, 6, 6, dtype=torch.float64)
    got = nca.step(x)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, x + reference_update(nca.update_net, x), rtol=1e-13, atol=1e-13)


def test_elu_is_f_elu():
    """The CPU version exp(min(h, 0)) - 1 + max(h, 0) against PyTorch's ELU, from -100 to 100."""
    h = torch.cat([torch.linspace(-100, 100, 20001), torch.tensor([0.0, -0.0, 1e-8, -1e-8, -1e-30])])
    torch.testing.assert_close(elu(h), F.elu(h), rtol=0, atol=1e-7)
    assert elu(torch.tensor([float("nan")])).isnan().all()


def test_elu_keeps_its_input_and_has_f_elus_gradient():
    h = torch.randn(4, 5, 5, 6)
    kept = h.clone()
    elu(h)
    assert torch.equal(h, kept)                                   # works on new tensors only
    upstream = torch.randn_like(h)
    g = h.clone().requires_grad_()
    (elu(g) * upstream).sum().backward()
    torch.testing.assert_close(g.grad, upstream * torch.where(h > 0, 1.0, torch.exp(h)))
    assert torch.autograd.gradcheck(elu, (torch.randn(30, dtype=torch.float64, requires_grad=True),))


def test_elu_in_half_precision_is_f_elu():
    """Under bf16 autocast (the AMX training path) the ELU is PyTorch's: exp(h) - 1 in bf16 would round
    ELU(-0.001) to 0."""
    h = torch.tensor([-3.0, -0.001, 0.5], requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = elu(torch.nn.functional.linear(h, torch.eye(3)))
    assert out.dtype == torch.bfloat16 and out[1] != 0
    torch.testing.assert_close(out, F.elu(h.detach().bfloat16()))


def test_elu_works_with_torch_func():
    h = torch.randn(3, 4, dtype=torch.float64)
    jacobian = torch.func.vmap(torch.func.jacrev(elu))(h)                  # (3, 4, 4)
    torch.testing.assert_close(jacobian, torch.diag_embed(torch.where(h > 0, 1.0, torch.exp(h))))


@pytest.mark.parametrize("n_blocks", [0, 2])
def test_update_network_without_gradients_matches_the_reference(n_blocks):
    """Sampling and evaluation run without gradients, where the update network takes elu's shortcut."""
    net = UpdateNetwork(channels=3, hidden=8, n_blocks=n_blocks)
    randomise(net)
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference_update(net, x), rtol=1e-5, atol=1e-5)


def test_update_network_without_blocks_has_elu_between_the_layers():
    net = UpdateNetwork(channels=3, hidden=4, n_blocks=0)
    assert len(net.blocks) == 0
    randomise(net)
    x = torch.randn(1, 3, 4, 4)
    linear = F.conv2d(F.conv2d(x, net.perceive.weight, net.perceive.bias, padding=1),
                      net.out.weight, net.out.bias)
    assert not torch.allclose(net(x), linear, atol=1e-4)       # a nonlinearity is applied


def test_one_step_only_sees_the_3x3_neighbourhood():
    nca = NCA(channels=4, hidden=8, n_blocks=2)
    randomise(nca)
    state = torch.randn(1, 4, 7, 7)
    poked = state.clone()
    poked[0, :, 3, 3] += 1.0
    changed = (nca.step(poked) - nca.step(state)).abs().sum(1)[0] > 0   # (7, 7)
    expected = torch.zeros(7, 7, dtype=torch.bool)
    expected[2:5, 2:5] = True
    assert torch.equal(changed, expected)


def test_one_by_one_conv_is_a_per_cell_linear_layer():
    torch.manual_seed(1)
    conv = nn.Conv2d(5, 3, kernel_size=1)
    linear = nn.Linear(5, 3)
    with torch.no_grad():
        linear.weight.copy_(conv.weight[:, :, 0, 0])
        linear.bias.copy_(conv.bias)
    x = torch.randn(2, 5, 4, 6)
    by_conv = conv(x)                                            # (B, 3, H, W)
    by_linear = linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    by_per_cell = per_cell(conv, x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(by_linear, by_conv, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(by_per_cell, by_conv, rtol=1e-5, atol=1e-6)
    # and cell by cell
    for i in range(4):
        for j in range(6):
            torch.testing.assert_close(by_conv[:, :, i, j], linear(x[:, :, i, j]), rtol=1e-5, atol=1e-6)


def test_parameter_count_of_the_paper_update_network():
    # 3x3 conv 256->256, four residual blocks of two 1x1 convs, 1x1 conv 256->256: ~1.2M (paper)
    net = UpdateNetwork(channels=256, hidden=256, n_blocks=4)
    n = sum(p.numel() for p in net.parameters())
    expected = (256 * 256 * 9 + 256) + 4 * 2 * (256 * 256 + 256) + (256 * 256 + 256)
    assert n == expected == 1_182_208


def test_bf16_keeps_the_state_float32():
    nca32 = NCA(channels=6, hidden=8, n_blocks=1)
    randomise(nca32)
    nca16 = NCA(channels=6, hidden=8, n_blocks=1, bf16=True)
    nca16.load_state_dict(nca32.state_dict())
    state = torch.randn(2, 6, 4, 4)
    out16 = nca16.step(state)
    assert out16.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in nca16.parameters())
    out32 = nca32.step(state)
    assert not torch.equal(out16, out32)                       # bf16 really was used for u
    torch.testing.assert_close(out16, out32, rtol=0.05, atol=0.05)
    # several steps: the state stays float32 throughout
    s = state
    for _ in range(3):
        s = nca16.step(s)
        assert s.dtype == torch.float32


def test_checkpointing_gives_the_same_gradients():
    plain = NCA(channels=5, hidden=8, n_blocks=2)
    randomise(plain, std=0.1)
    ckpt = NCA(channels=5, hidden=8, n_blocks=2, checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x0 = torch.randn(2, 5, 4, 4)
    grads = []
    for nca in (plain, ckpt):
        x = x0.clone().requires_grad_()
        s = x
        for _ in range(4):
            s = nca.step(s)
            if nca is not plain:
                assert s.requires_grad
        loss = (s ** 2).sum()
        loss.backward()
        grads.append([x.grad] + [p.grad for p in nca.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# --- stochastic cell updates (p_update) ----------------------------------------------------------
def test_update_mask_has_the_rate_p_update_per_cell():
    nca = NCA(channels=3, hidden=4, n_blocks=0, p_update=0.3)
    torch.manual_seed(0)
    mask = nca.update_mask(torch.zeros(50, 3, 20, 20))
    assert mask.shape == (50, 1, 20, 20)                    # one draw per cell, shared by its channels
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    rate = mask.mean().item()                               # 20,000 draws: stderr 0.0032
    assert abs(rate - 0.3) < 0.015
    cells = mask.flatten(1)                                 # cells of one image are drawn independently
    assert 0 < cells.sum(1).min() and cells.sum(1).max() < 400


def test_update_mask_differs_from_step_to_step():
    nca = NCA(channels=3, hidden=4, n_blocks=0, p_update=0.5)
    torch.manual_seed(0)
    state = torch.zeros(2, 3, 8, 8)
    assert not torch.equal(nca.update_mask(state), nca.update_mask(state))


def test_cells_that_do_not_fire_keep_their_state_exactly():
    nca = NCA(channels=4, hidden=8, n_blocks=0, p_update=0.5)
    randomise(nca)
    state = torch.randn(3, 4, 10, 10)
    torch.manual_seed(1)
    new = nca.step(state)
    torch.manual_seed(1)
    mask = nca.update_mask(state)                           # the same draw as inside the step
    full = state + nca.update_net(state)
    fired = mask.bool().expand_as(state)
    assert torch.equal(new[~fired], state[~fired])
    assert torch.allclose(new[fired], full[fired], atol=1e-6)
    assert 0 < fired.float().mean() < 1


def test_p_update_one_is_the_deterministic_step():
    nca = NCA(channels=4, hidden=8, n_blocks=1)
    randomise(nca)
    assert nca.p_update == 1.0 and nca.update_mask(torch.zeros(1, 4, 3, 3)) is None
    state = torch.randn(2, 4, 6, 6)
    torch.manual_seed(0)
    a = nca.step(state)
    torch.manual_seed(5)
    b = nca.step(state)
    assert torch.equal(a, b)
    assert torch.allclose(a, state + nca.update_net(state), atol=1e-6)


def test_p_update_zero_is_the_identity():
    nca = NCA(channels=4, hidden=8, n_blocks=0, p_update=0.0)
    randomise(nca)
    state = torch.randn(2, 4, 6, 6)
    assert torch.equal(nca.step(state), state)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_p_update_outside_zero_one_is_refused(p):
    with pytest.raises(ValueError, match="p_update"):
        NCA(channels=4, hidden=8, n_blocks=0, p_update=p)


def test_checkpointed_stochastic_step_has_the_gradients_of_the_plain_one():
    plain = NCA(channels=5, hidden=8, n_blocks=0, p_update=0.5)
    randomise(plain)
    ckpt = NCA(channels=5, hidden=8, n_blocks=0, p_update=0.5, checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    grads = []
    for nca in (plain, ckpt):
        torch.manual_seed(3)
        state = torch.randn(2, 5, 6, 6, requires_grad=True)
        out = state
        for _ in range(4):
            out = nca.step(out)
        out.square().sum().backward()
        grads.append((state.grad, [p.grad.clone() for p in nca.parameters()]))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    for a, b in zip(grads[0][1], grads[1][1]):
        assert torch.allclose(a, b, atol=1e-5)


def test_a_step_is_recomputed_in_backward_only_when_checkpointing_is_on_and_a_gradient_is_needed(monkeypatch):
    """checkpointing trades compute for memory; off, or without a gradient to compute, it must not run."""
    import vnca_tutorial.nca as nca_module
    calls = []

    def counting_checkpoint(fn, *args, **kwargs):
        calls.append(1)
        return fn(*args)
    monkeypatch.setattr(nca_module, "checkpoint", counting_checkpoint)
    state = torch.randn(1, 4, 5, 5, requires_grad=True)
    nca_module.NCA(4, 8, 1, checkpointing=False).step(state)
    assert calls == []                                          # off: never
    on = nca_module.NCA(4, 8, 1, checkpointing=True)
    with torch.no_grad():
        on.step(state)
    on.step(state.detach())
    assert calls == []                                          # no gradient wanted: never
    on.step(state)
    assert calls == [1]                                         # on, with a gradient: once per step
