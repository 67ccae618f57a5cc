"""Tests for vnca_tutorial.pool: one pool-training batch (`pool_loss`) checked line by line.

A tiny non-doubling VNCA (16x16 grid, |z| = 4) and a pool whose every slot is recognisable: slot i holds
a state with the value i + 1 in every cell and an image of its own, so each test can tell which slot a row
came from, which rows were damaged, and where each final state was written back.
"""
import pytest
import torch
from torch.distributions import kl_divergence

from vnca_tutorial.config import get_preset
from vnca_tutorial.model import VNCA
from vnca_tutorial.damage import random_square_masks
from vnca_tutorial.pool import StatePool, pool_loss, regrowth, state_overflow, step_change

B, P, Z, S = 8, 10, 4, 16


def tiny_model(**kw) -> VNCA:
    kw = {"state_bound": 0.0, "pool_fraction": 0.5, "pool_extra_steps": 0, "stationarity": 0.0,
          **kw}                                                                        # the paper's pool loss
    cfg = get_preset("mnist_nondoubling_cpu", z_dim=Z, hidden=8, encoder_channels=4, image_size=S,
                     batch_size=B, pool_size=P, min_steps=2, max_steps=3, **kw)
    torch.manual_seed(0)
    model = VNCA(cfg)
    with torch.no_grad():                              # a rule that is not the identity
        model.decoder.nca.update_net.out.weight.normal_(0, 0.1)
    return model


def full_pool() -> StatePool:
    pool = StatePool(P)
    states = torch.arange(1, P + 1, dtype=torch.float32)[:, None, None, None].expand(P, Z, S, S)
    images = (torch.rand(P, 1, S, S, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    pool.put(pool.slots_for_fresh(P), states.clone(), images)
    return pool


def images(n: int = B, seed: int = 2) -> torch.Tensor:
    return (torch.rand(n, 1, S, S, generator=torch.Generator().manual_seed(seed)) < 0.5).float()


class Recorder:
    """Wraps decoder.run to keep the states it starts from and the final states it returns."""

    def __init__(self, model: VNCA) -> None:
        self.run, self.inputs, self.finals = model.decoder.run, [], []
        model.decoder.run = self

    def __call__(self, states, steps, **kw):
        self.inputs.append(states.detach().clone())
        final = self.run(states, steps, **kw)
        self.finals.append(final)
        return final


def slot_of(row: torch.Tensor) -> int:
    """The pool slot a (possibly damaged) pool row came from: its largest value minus one."""
    return int(row.max().round().item()) - 1

def pool_loss_with(**setting):
    """One pool_loss batch of the tiny model with ``setting`` changed, from fixed seeds:
    (model, recorder of its decoder runs, loss, stats)."""
    model, pool = tiny_model(**setting), full_pool()
    rec = Recorder(model)
    torch.manual_seed(7)
    loss, stats = pool_loss(model, images(), pool, beta=1.0, steps=2,
                            generator=torch.Generator().manual_seed(0))
    return model, rec, loss, stats



def test_the_pool_share_of_the_batch_and_which_rows_are_damaged():
    model, pool = tiny_model(pool_fraction=0.5, damage_fraction=0.5), full_pool()
    rec = Recorder(model)
    pool_loss(model, images(), pool, beta=1.0, steps=2, generator=torch.Generator().manual_seed(0))
    start = rec.inputs[0]                               # (B, Z, S, S): fresh seeds, then pool rows
    fresh, from_pool = start[:4], start[4:]
    for row in fresh:                                   # a seed: every cell holds the same z
        assert torch.equal(row, row[:, :1, :1].expand_as(row))
    damaged = (from_pool == 0).flatten(1).any(1)        # pool states hold i + 1 > 0 everywhere
    assert damaged.tolist() == [True, True, False, False]
    for row in from_pool[:2]:                           # a zeroed S/2 x S/2 square in every channel
        zero = (row == 0).all(0)
        assert zero.sum() == (S // 2) ** 2 and (row == 0).sum() == Z * (S // 2) ** 2
    for row in from_pool[2:]:
        assert torch.equal(row, torch.full_like(row, slot_of(row) + 1))
    assert len({slot_of(r) for r in from_pool}) == 4    # four different slots


def test_no_pool_rows_until_the_pool_holds_a_batch():
    model, pool = tiny_model(), StatePool(P)
    rec = Recorder(model)
    _, stats = pool_loss(model, images(), pool, beta=1.0, steps=2)
    assert stats["from_pool"] == 0 and len(pool) == B
    for row in rec.inputs[0]:
        assert torch.equal(row, row[:, :1, :1].expand_as(row))


@pytest.mark.parametrize("fraction", [0.25, 0.75])
def test_the_kl_counts_the_fresh_rows_only_and_the_loss_divides_by_b(fraction):
    x = images()
    losses, finals = {}, {}
    for beta in (0.0, 1.0, 3.0):
        model, pool = tiny_model(pool_fraction=fraction), full_pool()
        rec = Recorder(model)
        torch.manual_seed(7)                            # the same z, masks and pool draw for each beta
        loss, stats = pool_loss(model, x, pool, beta=beta, steps=2, generator=torch.Generator().manual_seed(0))
        losses[beta], finals[beta] = loss.item(), rec
    n_fresh = B - int(round(B * fraction))
    with torch.no_grad():
        q = model.q_z_given_x(x[:n_fresh])
        kl_fresh = kl_divergence(q, model.prior())      # (n_fresh,)
    # the KL term: beta * (sum of the fresh rows' KL) / B
    assert losses[1.0] - losses[0.0] == pytest.approx(kl_fresh.sum().item() / B, rel=1e-4, abs=1e-4)
    assert losses[3.0] - losses[0.0] == pytest.approx(3 * kl_fresh.sum().item() / B, rel=1e-4, abs=1e-4)
    # the reconstruction term: minus the sum over all B rows of log p(target | final state), over B
    rec = finals[0.0]
    final = rec.finals[0]
    targets = torch.cat([x[:n_fresh], full_pool().images[[slot_of(r) for r in rec.inputs[0][n_fresh:]]]])
    log_p = model.likelihood(final).log_prob(targets)   # (B,)
    assert losses[0.0] == pytest.approx(-log_p.sum().item() / B, rel=1e-5)


@pytest.mark.parametrize("fraction", [0.75, 1.0])
def test_a_small_batch_keeps_one_fresh_image(fraction):
    """Batch 2 at pool_fraction 0.75 rounds to 2 pool rows; one row stays fresh, so the KL term is there."""
    x = images()[:2]
    model, pool = tiny_model(pool_fraction=fraction), full_pool()
    rec = Recorder(model)
    loss, stats = pool_loss(model, x, pool, beta=1.0, steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and stats["kl"] > 0                   # the fresh row's KL
    seed, from_pool = rec.inputs[0]                                    # one seed, then one pool state
    assert torch.equal(seed, seed[:, :1, :1].expand_as(seed)) and (seed != seed.round()).any()  # a z
    slot = slot_of(from_pool)                                          # full_pool's states: slot + 1
    assert 0 <= slot < P and set(from_pool.unique().tolist()) <= {0.0, slot + 1.0}


def test_final_states_go_back_to_the_right_slots_with_their_images():
    model, pool = tiny_model(pool_fraction=0.5), full_pool()
    before = pool.images.clone()
    x = images()
    rec = Recorder(model)
    pool_loss(model, x, pool, beta=1.0, steps=2, generator=torch.Generator().manual_seed(0))
    final = rec.finals[0].detach()
    drawn = [slot_of(r) for r in rec.inputs[0][4:]]
    for row, slot in zip(final[4:], drawn):             # pool rows: back into the slot they came from
        assert torch.allclose(pool.states[slot], row)
        assert torch.equal(pool.images[slot], before[slot])
    written = set(drawn)
    for i in range(4):                                  # fresh rows: each in a slot of its own, with x[i]
        slots = [s for s in range(P) if torch.allclose(pool.states[s], final[i])]
        assert len(slots) == 1 and slots[0] not in written
        assert torch.equal(pool.images[slots[0]], x[i])
        written.add(slots[0])
    for s in set(range(P)) - written:                   # every other slot untouched
        assert torch.equal(pool.states[s], torch.full((Z, S, S), s + 1.0))


def test_no_gradient_flows_into_the_pool():
    model, pool = tiny_model(), full_pool()
    loss, _ = pool_loss(model, images(), pool, beta=1.0, steps=2, generator=torch.Generator().manual_seed(0))
    assert not pool.states.requires_grad and pool.states.grad_fn is None
    loss.backward()                                     # and the pool is not part of the graph
    assert pool.states.grad is None
    assert model.encoder.linear.weight.grad is not None


def test_state_overflow_is_the_l1_distance_to_the_box():
    state = torch.tensor([[[[0.5, -3.0], [2.5, 1.0]]]])          # (1, 1, 2, 2)
    assert state_overflow(state, 2.0).tolist() == [1.0 + 0.5]
    assert state_overflow(state, 0.0).tolist() == [0.0]            # 0 switches it off
    assert state_overflow(state, 5.0).tolist() == [0.0]


def test_the_overflow_penalty_enters_the_loss():
    losses = {}
    for bound in (0.0, 0.5):
        model, rec, losses[bound], stats = pool_loss_with(state_bound=bound)
    expected = state_overflow(rec.finals[0], 0.5).sum().item() / B
    assert expected > 0
    assert (losses[0.5] - losses[0.0]).item() == pytest.approx(expected, rel=1e-4)
    assert stats["overflow"] == pytest.approx(expected * B / B, rel=1e-4)


def test_pool_states_age_without_gradient_before_the_loss_sees_them():
    model, pool = tiny_model(pool_extra_steps=5), full_pool()
    rec = Recorder(model)
    g = torch.Generator().manual_seed(0)
    pool_loss(model, images(), pool, beta=1.0, steps=2, generator=g)
    assert len(rec.inputs) == 2                         # the ageing run, then the training run
    aged_from, trained_from = rec.inputs
    assert aged_from.shape[0] == 4                      # only the pool rows age
    for row in aged_from:                               # straight from the pool
        assert torch.equal(row, torch.full_like(row, slot_of(row) + 1))
    assert not rec.finals[0].requires_grad              # no gradient through the extra steps
    assert not torch.allclose(rec.finals[0], aged_from)  # the extra steps changed the states
    undamaged = trained_from[4 + 2:]                    # rows 0-3 fresh, 4-5 damaged, 6-7 aged only
    assert torch.allclose(undamaged, rec.finals[0][2:])


def test_no_ageing_by_default():
    model, pool = tiny_model(), full_pool()
    rec = Recorder(model)
    pool_loss(model, images(), pool, beta=1.0, steps=2, generator=torch.Generator().manual_seed(0))
    assert len(rec.inputs) == 1


def test_step_change_is_the_norm_of_one_more_step():
    model = tiny_model()
    states = torch.randn(3, Z, S, S, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = (model.decoder.nca.step(states) - states).flatten(1).norm(dim=1)   # (3,)
        assert torch.allclose(step_change(model, states), expected)
        assert (expected > 0).all()
        model.decoder.nca.update_net.out.weight.zero_()                   # u = 0: every state a fixed point
        model.decoder.nca.update_net.out.bias.zero_()
        assert step_change(model, states).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("fraction", [0.25, 0.75])
def test_the_stationarity_penalty_counts_the_pool_rows_only(fraction):
    losses = {}
    for weight in (0.0, 0.5):
        model, rec, losses[weight], stats = pool_loss_with(stationarity=weight, pool_fraction=fraction)
    n_pool = int(round(B * fraction))
    with torch.no_grad():
        change = step_change(model, rec.finals[0][B - n_pool:])          # (n_pool,)
    assert (change > 0).all()
    assert (losses[0.5] - losses[0.0]).item() == pytest.approx(0.5 * change.sum().item() / B, rel=1e-4)
    assert stats["step_change"] == pytest.approx(change.mean().item(), rel=1e-4)


def extra_steps_drawn(max_extra: int, times: int) -> set[int]:
    """The step counts `age` asks the decoder to run, over ``times`` calls."""
    from vnca_tutorial.pool import age
    model = tiny_model()
    asked = []
    model.decoder.run = lambda states, steps, **kw: (asked.append(steps), states)[1]
    g = torch.Generator().manual_seed(0)
    for _ in range(times):
        age(model, torch.zeros(2, Z, S, S), max_extra, generator=g)
    return set(asked)


def test_ageing_draws_every_extra_step_count_from_0_to_the_maximum_and_no_other():
    assert extra_steps_drawn(3, 200) == {0, 1, 2, 3}    # E ~ U{0, ..., max_extra}


def test_pool_rows_start_as_soon_as_the_pool_holds_one_batch():
    model, pool = tiny_model(pool_fraction=0.5), StatePool(P)
    states = torch.ones(B, Z, S, S)
    pool.put(pool.slots_for_fresh(B), states, images())
    assert len(pool) == B
    _, stats = pool_loss(model, images(), pool, beta=1.0, steps=2, generator=torch.Generator().manual_seed(0))
    assert stats["from_pool"] == B // 2


def test_fresh_states_fill_a_pool_exactly_as_large_as_what_the_batch_leaves_free():
    """A full pool of 4 whose batch holds 2 of its states can take exactly 2 fresh states: the other 2 slots."""
    pool = StatePool(4)
    pool.put(pool.slots_for_fresh(4), torch.zeros(4, Z, S, S), torch.zeros(4, 1, S, S))
    held = torch.tensor([0, 3])
    fresh = pool.slots_for_fresh(2, torch.Generator().manual_seed(0), exclude=held)
    assert sorted(fresh.tolist()) == [1, 2]
    with pytest.raises(ValueError, match="pool_size"):
        pool.slots_for_fresh(3, torch.Generator().manual_seed(0), exclude=held)


def test_a_small_bound_still_bounds_and_one_extra_step_still_ages():
    state = torch.full((1, 1, 2, 2), 2.0)
    assert state_overflow(state, 0.5).tolist() == [4 * 1.5]        # any bound > 0 is on
    assert extra_steps_drawn(1, 50) == {0, 1}                       # max_extra = 1 ages too


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_the_step_change_is_measured_only_when_its_penalty_is_on(weight):
    """stationarity = 0 switches the penalty off: nothing is computed and the stat is 0; any weight > 0
    (1 included) computes it for the pool rows."""
    model, pool = tiny_model(stationarity=weight), full_pool()
    torch.manual_seed(7)
    _, stats = pool_loss(model, images(), pool, beta=1.0, steps=2, generator=torch.Generator().manual_seed(0))
    assert (stats["step_change"] > 0) == (weight > 0)
    assert weight > 0 or stats["step_change"] == 0.0


def test_regrowth_scores_what_grows_back_from_a_zeroed_square_with_gradient_before_the_damage():
    model, x = tiny_model(), images(3)
    grown = torch.randn(3, Z, S, S, generator=torch.Generator().manual_seed(4), requires_grad=True)
    scores = regrowth(model, grown, x, steps=2, generator=torch.Generator().manual_seed(5))   # (3,)
    mask = random_square_masks(3, S, S, torch.Generator().manual_seed(5))                    # (3, S, S)
    with torch.no_grad():
        expected = model.likelihood(model.decoder.run(grown * ~mask[:, None], 2)).log_prob(x)
    assert torch.allclose(scores, expected)
    scores.sum().backward()
    reach = grown.grad.abs().sum(1)                                                           # (3, S, S)
    assert (reach[mask] == 0).all()            # a zeroed cell keeps nothing of its grown state
    assert (reach[~mask] > 0).float().mean() > 0.9


def test_the_regrowth_term_enters_the_loss_and_reaches_the_encoder():
    x, losses, grads = images(), {}, {}
    for share in (0.0, 0.5):
        model, rec, losses[share], stats = pool_loss_with(regrow_fraction=share)
        losses[share].backward()
        grads[share] = model.encoder.linear.weight.grad.clone()
    assert len(rec.inputs) == 2                          # the batch's T steps, then the regrowth's
    damaged, regrown = rec.inputs[1], rec.finals[1]
    assert damaged.shape[0] == 4                         # half of 8 rows: the 4 fresh ones
    zeroed = (damaged == 0).all(1)                       # (4, S, S): the cells the damage wiped
    assert (zeroed.sum((1, 2)) == (S // 2) ** 2).all()
    assert torch.equal(damaged[~zeroed[:, None].expand_as(damaged)],
                       rec.finals[0][:4].detach()[~zeroed[:, None].expand_as(damaged)])
    with torch.no_grad():
        expected = model.likelihood(regrown).log_prob(x[:4])                 # (4,)
    assert (losses[0.5] - losses[0.0]).item() == pytest.approx(-expected.sum().item() / B, rel=1e-4)
    assert stats["regrowth"] == pytest.approx(expected.mean().item(), rel=1e-4)
    assert not torch.allclose(grads[0.5], grads[0.0])    # through z, the seed and the first T steps
