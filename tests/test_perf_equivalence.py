"""The fast paths compute what the straightforward implementation computes, to float32 tolerance.

* the channels-last update network (1x1 convs as per-cell matrix multiplies) equals NCHW ``F.conv2d`` with
  the same weights, values and gradients, for any input memory format;
* so do whole decoder rollouts, doubling and non-doubling (the zero-initialised last layer randomised);
* activation checkpointing gives the same outputs and gradients;
* the IWAE bound is the same however the k samples are chunked, with or without inference mode;
* the benchmark's instruments count what benchmarks/README.md says they count.

Tiny sizes, no timing assertions. The reference implementation used by benchmarks/benchmark.py is checked
here too, against an independent one.
"""
import copy
import functools
import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vnca_tutorial.config import DoublingConfig, NonDoublingConfig
from vnca_tutorial.decoders import DoublingDecoder, NonDoublingDecoder
from vnca_tutorial.evaluate import evaluate_bound
from vnca_tutorial.model import VNCA
from vnca_tutorial.nca import NCA, UpdateNetwork, reference_update
from vnca_tutorial.pool import StatePool, pool_loss

from helpers import randomise as _randomise

randomise = functools.partial(_randomise, std=0.15)   # this module's scale of random weights

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"vnca_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


bench = _load("benchmark")
instruments = _load("instruments")

TOL = dict(rtol=1e-4, atol=1e-5)
TINY_D = DoublingConfig(z_dim=6, hidden=10, n_blocks=2, n_doublings=2, image_size=8, steps_per_stage=2,
                        encoder_channels=4, batch_size=3)
TINY_ND = NonDoublingConfig(z_dim=6, hidden=10, image_size=8, min_steps=3, max_steps=5, encoder_channels=4,
                            batch_size=4, pool_size=8)


def assert_close_scaled(a: torch.Tensor, b: torch.Tensor) -> None:
    """float32 agreement for sums of many terms: absolute tolerance relative to the tensor's scale."""
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, b.abs().max().item()))


def grads_of(loss: torch.Tensor, tensors) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(tensors)))


# --- the update network ---------------------------------------------------------------------------
@pytest.mark.parametrize("n_blocks", [0, 1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_update_network_equals_nchw_conv2d(n_blocks, channels_last):
    net = UpdateNetwork(channels=5, hidden=9, n_blocks=n_blocks)
    randomise(net, seed=n_blocks)
    x = torch.randn(2, 5, 6, 7, generator=torch.Generator().manual_seed(1))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    fast, want = net(x), reference_update(net, x)        # channels-last matmuls against NCHW F.conv2d
    torch.testing.assert_close(fast, want, **TOL)
    assert bench.reference_update is reference_update   # the benchmark's reference rows time this one
    weights = torch.randn(fast.shape, generator=torch.Generator().manual_seed(2))
    params = [x, *net.parameters()]
    for a, b in zip(grads_of((fast * weights).sum(), params), grads_of((want * weights).sum(), params)):
        assert_close_scaled(a, b)


def test_nca_step_gives_the_same_values_for_any_input_memory_format():
    nca = NCA(channels=5, hidden=8, n_blocks=1)
    randomise(nca)
    x = torch.randn(3, 5, 4, 4)                                  # NCHW, as torch.cat makes pool batches
    y = nca.step(x)
    torch.testing.assert_close(y, x + reference_update(nca.update_net, x), **TOL)
    torch.testing.assert_close(nca.step(x.contiguous(memory_format=torch.channels_last)), y, rtol=0, atol=0)


def _with_reference(decoder):
    """A copy of ``decoder`` whose NCA steps use the benchmark's NCHW reference (same weights)."""
    ref = copy.deepcopy(decoder)
    ref.nca.step = types.MethodType(bench.reference_step, ref.nca)
    return ref


def _compare_rollouts(fast_decoder, ref_decoder, z, **kw):
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    final1, states1 = fast_decoder(z1, return_states=True, **kw)
    final2, states2 = ref_decoder(z2, return_states=True, **kw)
    assert len(states1) == len(states2)
    for a, b in zip(states1, states2):
        torch.testing.assert_close(a, b, **TOL)
    w = torch.randn(final1.shape, generator=torch.Generator().manual_seed(7))
    g1 = grads_of((final1 * w).sum(), [z1, *fast_decoder.parameters()])
    g2 = grads_of((final2 * w).sum(), [z2, *ref_decoder.parameters()])
    for a, b in zip(g1, g2):
        assert_close_scaled(a, b)


def test_doubling_rollout_equals_reference():
    decoder = DoublingDecoder(z_dim=6, hidden=10, n_blocks=2, n_doublings=2, steps_per_stage=3)
    randomise(decoder, seed=3)                                   # includes the zero-initialised last layer
    assert decoder.nca.update_net.out.weight.abs().sum() > 0
    z = torch.randn(3, 6, generator=torch.Generator().manual_seed(4))
    _compare_rollouts(decoder, _with_reference(decoder), z)


def test_nondoubling_rollout_equals_reference():
    decoder = NonDoublingDecoder(z_dim=6, hidden=10, n_blocks=0, size=6, min_steps=2, max_steps=6)
    randomise(decoder, seed=5)
    z = torch.randn(2, 6, generator=torch.Generator().manual_seed(6))
    _compare_rollouts(decoder, _with_reference(decoder), z, steps=6)
    # from a NCHW state, as pool training starts
    state = torch.randn(2, 6, 6, 6, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(decoder.run(state, 4), _with_reference(decoder).run(state, 4), **TOL)


# --- activation checkpointing ------------------------------------------------------------------------
def _vnca(config, seed=0):
    torch.manual_seed(seed)
    model = VNCA(config)
    randomise(model.decoder, seed=seed + 1, std=0.1)
    return model


def _images(n, size=8, seed=0):
    return (torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def _loss_and_grads(model, x, pool=None, steps=None):
    torch.manual_seed(11)
    model.zero_grad(set_to_none=True)
    loss = model(x) if pool is None else pool_loss(model, x, pool, model.config.beta, steps)[0]
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("config", [TINY_D, TINY_ND], ids=["doubling", "nondoubling"])
def test_checkpointing_gives_the_same_loss_and_gradients(config):
    plain = _vnca(config)
    ckpt = _vnca(config.replace(checkpointing=True))
    ckpt.load_state_dict(plain.state_dict())
    x = _images(config.batch_size)
    l1, g1 = _loss_and_grads(plain, x)
    l2, g2 = _loss_and_grads(ckpt, x)
    torch.testing.assert_close(l1, l2, **TOL)
    for a, b in zip(g1, g2):
        assert_close_scaled(a, b)
    z = torch.randn(2, config.z_dim)
    torch.testing.assert_close(plain.decode(z), ckpt.decode(z), **TOL)


def test_checkpointing_gives_the_same_pool_training_update():
    plain = _vnca(TINY_ND, seed=2)
    ckpt = _vnca(TINY_ND.replace(checkpointing=True), seed=2)
    ckpt.load_state_dict(plain.state_dict())
    x = _images(TINY_ND.batch_size, seed=1)
    results = []
    for model in (plain, ckpt):
        pool = StatePool(TINY_ND.pool_size)
        with torch.no_grad():
            pool.put(pool.slots_for_fresh(4), model.decoder.seed(torch.randn(4, TINY_ND.z_dim,
                     generator=torch.Generator().manual_seed(3))), x)
        results.append((_loss_and_grads(model, x, pool=pool, steps=4), pool.states.clone()))
    (l1, g1), s1 = results[0]
    (l2, g2), s2 = results[1]
    torch.testing.assert_close(l1, l2, **TOL)
    torch.testing.assert_close(s1, s2, **TOL)                 # the states written back to the pool
    for a, b in zip(g1, g2):
        assert_close_scaled(a, b)


# --- the importance-weighted bound ---------------------------------------------------------------------
@pytest.mark.parametrize("config", [TINY_D, TINY_ND], ids=["doubling", "nondoubling"])
def test_chunked_iwae_equals_unchunked(config):
    model = _vnca(config, seed=4).eval()
    x = _images(2, seed=5)
    k = 10

    def bound(chunk, inference=True):
        ctx = torch.inference_mode() if inference else torch.enable_grad()
        with ctx:
            return model.iwae(x, k=k, chunk=chunk, generator=torch.Generator().manual_seed(9)).detach()

    whole = bound(k)
    for chunk in (1, 3, 4, None):
        torch.testing.assert_close(bound(chunk), whole, **TOL)
    torch.testing.assert_close(bound(3, inference=False), whole, **TOL)
    a = evaluate_bound(model, _images(5, seed=6), k=6, batch_size=2, chunk=1, seed=3)
    b = evaluate_bound(model, _images(5, seed=6), k=6, batch_size=2, chunk=None, seed=3)
    assert abs(a.nats - b.nats) < 1e-4 * abs(b.nats)


# --- the benchmark's instruments -----------------------------------------------------------------------
def test_flop_counter_counts_two_flops_per_weight_per_cell():
    net = UpdateNetwork(channels=4, hidden=8, n_blocks=2)
    x = torch.randn(3, 4, 5, 5)
    with FlopCounterMode(display=False) as counter:
        net(x)
    macs_per_cell = sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Conv2d))
    assert counter.get_total_flops() == 2 * macs_per_cell * 3 * 5 * 5


def test_iwae_flops_extrapolate_exactly():
    model = _vnca(TINY_D, seed=1).eval()
    x = _images(1)
    total, parts = bench.iwae_gflop(model, x, k=5)
    with torch.inference_mode():
        direct = instruments.count_gflop(lambda: model.iwae(x, k=5))
    assert abs(total - direct) <= 1e-12 * direct + 1e-15
    assert parts["decoder_gflop_per_sample"] > 0 and parts["encoder_gflop"] > 0


def test_tensor_memory_tracker_counts_allocations_not_views():
    with instruments.TensorMemoryTracker() as mem:
        a = torch.ones(1000)                     # 4000 bytes
        v = a.view(10, 100).t()                  # a view: nothing new
        a.mul_(2)                                # in place: nothing new
        b = a * 2                                # 4000 more
        assert mem.current == 8000
        del a, v, b
        assert mem.current == 0
    assert mem.peak == 8000


def test_benchmark_measures_a_tiny_preset():
    plan = bench.Plan(warmup=0, repeats=1, batch=2, decoder_batch=2, iwae_k=4, iwae_k_measured=2)
    rates = {"float32": {"1": {"gflops_best": 10.0, "gflops_per_cpu_s_best": 10.0}}}
    config = TINY_ND.replace(image_size=16, hidden=16, min_steps=16, max_steps=16)  # decoder-dominated
    variants = [bench.Variant("fast", config), bench.Variant("reference", config),
                bench.Variant("fast+ckpt", config.replace(checkpointing=True), inference=False)]
    rows = bench.measure_preset("tiny", variants, plan, 1, rates, log=lambda s: None)
    assert [r["impl"] for r in rows] == ["fast", "reference", "fast+ckpt"]
    fast, ref, ckpt = rows
    assert fast["train"]["gflop"] == ref["train"]["gflop"] > 0   # same arithmetic, counted both ways
    assert ckpt["train"]["gflop"] > fast["train"]["gflop"]       # checkpointing recomputes the forward
    assert ckpt["train"]["peak_tensor_mib"] < fast["train"]["peak_tensor_mib"]
    assert fast["iwae"]["extrapolated"] and ckpt["iwae"] is None
    result = {"started": "now", "wall_minutes": 0.0, "load_start": None, "load_end": None,
              "machine": instruments.cpu_info(), "matmul": {"float32": {"1": {"n": 8, "gflops_best": 10.0,
              "gflops_median": 10.0, "gflops_per_cpu_s_best": 10.0}}},
              "bf16": {"message": "not requested"}, "rows": rows}
    report = bench.format_report(result)
    assert "reference / fast" in report and "tiny" in report


@pytest.mark.parametrize("script", ["benchmark", "gpu_benchmark", "scaling", "before_after", "elu_speed"])
def test_benchmark_scripts_import_and_show_help(script, capsys):
    module = bench if script == "benchmark" else _load(script)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_before_after_runs_on_a_tiny_batch_and_names_the_cpu(tmp_path):
    """A smoke run of before_after.py (it once broke silently when NCA._step gained its mask argument)."""
    out = tmp_path / "ba.json"
    result = _load("before_after").main(["--presets", "mnist_nondoubling_cpu", "--variants", "package,cl-step",
                                         "--batch", "2", "--repeats", "1", "--json", str(out)])
    row = result["presets"]["mnist_nondoubling_cpu"]
    assert row["cl-step"]["max_rel_grad_diff"] < 1e-4 and row["package"]["max_rel_grad_diff"] == 0
    assert json.loads(out.read_text())["machine"]["description"] == instruments.cpu_info()["description"]


def test_elu_speed_runs_on_a_shipped_model_and_its_bounds_agree(tmp_path):
    """A smoke run of elu_speed.py: both ELUs, two chunks, one training update each, on the shipped small
    doubling model (a deterministic decoder: every row's bound must be the same)."""
    out = tmp_path / "elu.json"
    result = _load("elu_speed").main(["mnist_doubling_small", "--k", "2", "--batch", "2", "--chunks", "1", "2",
                                      "--updates", "1", "--json", str(out)])
    means = [row["mean"] for row in result["rows"]]
    assert len(means) == 4 and max(means) - min(means) < 1e-3
    assert set(result["train_cpu_s"]) == {"F.elu", "nca.elu"} and len(result["train_cpu_s"]["F.elu"]) == 1
    assert json.loads(out.read_text())["cpu"] == result["cpu"]


def test_instrumented_memory_is_not_inflated_by_the_flop_counter():
    """The memory pass of `instrumented` sees what a plain tracked update allocates, with checkpointing too
    (FlopCounterMode, active in the same pass, made checkpointing keep far more alive)."""
    config = DoublingConfig(name="probe", image_size=16, n_doublings=3, steps_per_stage=3, z_dim=16, hidden=32,
                            n_blocks=2, batch_size=4, encoder_channels=4, checkpointing=True)
    peaks = {}
    for ckpt in (False, True):
        c = config.replace(checkpointing=ckpt)
        update = bench.TrainingUpdate(bench.build(c), bench.fake_images(c, 4), pool=False)
        update()                                                 # steady state
        with instruments.TensorMemoryTracker() as mem:
            update()
        info = instruments.instrumented(update)
        assert info["gflop"] > 0
        assert info["peak_tensor_mib"] == pytest.approx(mem.peak / instruments.MiB, rel=0.05)
        peaks[ckpt] = mem.peak
    assert peaks[True] < 0.6 * peaks[False]
