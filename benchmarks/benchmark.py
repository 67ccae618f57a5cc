"""CPU benchmark of the VNCA: speed, memory, counted FLOPs and efficiency, in one run.

For every selected preset it measures, on this machine and in this process:

* one training update exactly as `vnca_tutorial.train` does it (forward, backward, gradient clipping, Adam;
  the non-doubling presets with a filled pool, damage, and T fixed at the mean of [min_steps, max_steps]):
  updates per second and images per second at the preset's batch size (median of a few updates after
  warm-up), wall-clock and process CPU time;
* the peak memory of one update: the peak of the tensor memory the update allocates (exact: tracked with a
  TorchDispatchMode) and the peak growth of the process RSS (sampled every 2 ms, after ``malloc_trim``);
* the decoder's forward time per image (``torch.inference_mode``, the preset's batch size);
* the importance-weighted bound with k = 128 samples (`VAE.iwae`, ``torch.inference_mode``) per test image;
* the FLOPs of each, COUNTED with ``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplies and
  convolutions, forward and backward; elementwise work is not counted), and the fraction of this machine's
  float32 matrix-multiply rate they reach. That rate is measured in the same run (a 2048 x 2048 sgemm on 1
  and 2 threads), together with the bfloat16 rate.

Each VNCA preset is measured twice, side by side: ``fast`` is the package (channels-last per-cell matrix
multiplies, `vnca_tutorial.nca.per_cell`), ``reference`` is the straightforward implementation, the same
update network with the same weights computed in NCHW with ``F.conv2d`` 1x1 convolutions
(`reference_update` below; tests/test_perf_equivalence.py checks that both compute the same function).

    python benchmarks/benchmark.py --quick                         # smoke run, a few minutes
    python benchmarks/benchmark.py --presets mnist_doubling_cpu,mnist_nondoubling_cpu --threads 1 \\
        --json benchmarks/results/cpu.json --txt benchmarks/results/cpu.txt
    python benchmarks/benchmark.py --checkpointing --bf16          # extra rows: checkpointing, bfloat16

The default presets are all ``*_cpu`` presets plus the paper-scale ``mnist_doubling`` with a reduced plan
(two instrumented updates, one counting FLOPs and one tracking memory, that are also the warm-up, one timed update, no reference row, the IWAE timed
at k = 16 and extrapolated to k = 128, which is exact in FLOPs and close in time since the encoder runs
once and the decoder k times in chunks). Images are random (binary or 8-bit): speed does not depend on
pixel values, and no data set has to be on disk. On a machine that other jobs share, wall-clock numbers
are noisy; the process CPU time (also reported) is steadier with one thread. See benchmarks/README.md.

Why one script of over 500 lines: the measurements (a training update, a decoding, the bound) share one
plan, one interleaving and one report; the instruments themselves live in instruments.py.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "benchmarks"):   # the package from a checkout without installing it; instruments
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from vnca_tutorial.config import PRESETS, NonDoublingConfig, config_to_dict, get_preset  # noqa: E402
from vnca_tutorial.model import VNCA, build_model  # noqa: E402
from vnca_tutorial.nca import NCA, reference_update  # noqa: E402 (the reference rows time it)
from vnca_tutorial.pool import StatePool, pool_loss  # noqa: E402

from instruments import (MiB, TensorMemoryTracker, count_gflop, cpu_info, instrumented,  # noqa: E402
                         load_average, malloc_trim, matmul_rate, num_threads)

QUICK_PRESETS = ["mnist_doubling_cpu", "mnist_nondoubling_cpu", "mnist_baseline_cpu"]


def default_presets() -> list[str]:
    return [n for n in PRESETS if n.endswith("_cpu")] + ["mnist_doubling"]


# ----------------------------------------------------------------------------------------------------
# The straightforward implementation, for comparison
# ----------------------------------------------------------------------------------------------------
def reference_step(nca: NCA, state: Tensor) -> Tensor:
    """One NCA step with `reference_update`, the state kept NCHW; honours ``bf16`` and ``checkpointing``."""
    state = state.contiguous()

    def _step(s: Tensor) -> Tensor:
        with torch.autocast(device_type=s.device.type, dtype=torch.bfloat16, enabled=nca.bf16):
            update = reference_update(nca.update_net, s)
        return s + update.float()

    if nca.checkpointing and torch.is_grad_enabled() and state.requires_grad:
        return checkpoint(_step, state, use_reentrant=False)
    return _step(state)


@contextlib.contextmanager
def use_reference(model):
    """Inside the block, ``model``'s NCA steps are computed by `reference_step` (same weights)."""
    nca = model.decoder.nca
    nca.step = types.MethodType(reference_step, nca)
    try:
        yield model
    finally:
        del nca.step


# ----------------------------------------------------------------------------------------------------
# What is measured
# ----------------------------------------------------------------------------------------------------
def fake_images(config, n: int, seed: int = 0, device: str = "cpu") -> Tensor:
    """Random images of the preset's kind, float32 as `train` feeds them (binary, or 0..255)."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, config.image_channels, config.image_size, config.image_size)
    if config.likelihood == "bernoulli":
        return (torch.rand(shape, generator=g) < 0.2).float().to(device)
    return torch.randint(0, 256, shape, generator=g).float().to(device)


def train_steps(config) -> int | None:
    """The non-doubling model trains with T ~ U[min, max]; the benchmark uses the mean, rounded."""
    if isinstance(config, NonDoublingConfig):
        return (config.min_steps + config.max_steps) // 2
    return None


class TrainingUpdate:
    """One training update as `vnca_tutorial.train.train` does it; the pool (non-doubling) is pre-filled
    so that every measured update draws the preset's `pool_fraction` of its batch from the pool and
    damages half of those."""

    def __init__(self, model, x: Tensor, pool: bool = True) -> None:
        c = model.config
        self.model, self.x, self.config = model, x, c
        self.optimizer = torch.optim.Adam(model.parameters(), lr=c.lr)
        self.steps = train_steps(c)
        self.pool = None
        if isinstance(c, NonDoublingConfig) and pool:
            self.pool = StatePool(c.pool_size)
            g = torch.Generator().manual_seed(1)
            with torch.no_grad():
                seeds = model.decoder.seed(torch.randn(len(x), c.z_dim, generator=g).to(x.device))
            self.pool.put(self.pool.slots_for_fresh(len(x)), seeds, x)
        # Allocate Adam's state now (a step with zero gradients leaves the weights as they are), so that
        # the memory measured for an update is that of a steady-state update, not of the first one.
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def __call__(self) -> float:
        m = self.model
        if self.pool is not None:
            loss, _ = pool_loss(m, self.x, self.pool, self.config.beta, self.steps)
        elif self.steps is not None:
            loss, _ = m(self.x, terms=True, steps=self.steps)
        else:
            loss, _ = m(self.x, terms=True)
        value = loss.item()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return value


@dataclass
class Plan:
    """How much to measure for one preset."""
    warmup: int = 1              # untimed updates after the instrumented one
    repeats: int = 3             # timed updates (the median is reported)
    batch: int | None = None     # None: the preset's batch size
    decoder_batch: int | None = None
    iwae_k: int = 128
    iwae_k_measured: int = 128   # < iwae_k: time k_measured samples and extrapolate linearly
    iwae_images: int = 1
    reference: bool = True


def plan_for(name: str, args) -> Plan:
    paper = not name.endswith("_cpu")
    if args.quick:
        return Plan(warmup=0, repeats=2, batch=8, decoder_batch=8, iwae_k_measured=16 if paper else 128,
                    reference=not paper)
    if paper:
        return Plan(warmup=0, repeats=max(1, args.repeats // 3), decoder_batch=4,
                    iwae_k_measured=16, reference=args.paper_reference)
    return Plan(warmup=args.warmup, repeats=args.repeats, iwae_images=args.iwae_images)


def build(config, seed: int = 0, device: str = "cpu"):
    torch.manual_seed(seed)
    return build_model(config).to(device)


def interleaved(fns: dict[str, Callable[[], object]], warmup: int, repeats: int,
                sync: Callable[[], None] = lambda: None) -> dict[str, dict]:
    """Median wall-clock and process CPU seconds of ``repeats`` calls of each function after ``warmup``
    calls, alternating the functions call by call, so that a change in the machine's load during the
    measurement affects every variant alike. ``sync`` waits for queued device work (CUDA)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync()
    wall: dict[str, list] = {k: [] for k in fns}
    cpu: dict[str, list] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            sync()
            wall[k].append(time.perf_counter() - w0)
            cpu[k].append(time.process_time() - c0)
    return {k: {"wall_s": statistics.median(wall[k]), "cpu_s": statistics.median(cpu[k]),
                "wall_all": [round(w, 4) for w in wall[k]], "cpu_all": [round(c, 4) for c in cpu[k]]}
            for k in fns}


def iwae_gflop(model, x: Tensor, k: int, chunk: int | None = None) -> tuple[float, dict]:
    """FLOPs of `VAE.iwae` with k samples, counted at k = 1 and k = 2 and extrapolated: the encoder runs
    once per image and the decoder k times, so gflop(k) = encoder + k * decoder holds exactly."""
    def at(kk):
        with torch.inference_mode():
            return count_gflop(lambda: model.iwae(x, k=kk, chunk=chunk,
                                                  generator=torch.Generator(x.device).manual_seed(0)))
    f1, f2 = at(1), at(2)
    decoder, encoder = f2 - f1, 2 * f1 - f2
    return encoder + k * decoder, {"encoder_gflop": encoder, "decoder_gflop_per_sample": decoder}


def measure_iwae(model, config, plan: Plan, chunk: int | None = None, inference: bool = True) -> dict:
    """Seconds per test image of the k-sample bound (timed at plan.iwae_k_measured samples)."""
    x = fake_images(config, plan.iwae_images, seed=3)
    k, km = plan.iwae_k, plan.iwae_k_measured
    context = torch.inference_mode if inference else contextlib.nullcontext

    def run(kk):
        with context():
            model.iwae(x, k=kk, chunk=chunk, generator=torch.Generator(x.device).manual_seed(0))

    run(min(km, 8))                                                   # warm-up
    c0, w0 = time.process_time(), time.perf_counter()
    run(km)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    gflop, parts = iwae_gflop(model, x, k, chunk)
    gflop_measured = parts["encoder_gflop"] + km * parts["decoder_gflop_per_sample"]
    scale = gflop / gflop_measured                                    # 1 unless extrapolated
    n = len(x)
    return {"k": k, "k_measured": km, "extrapolated": km != k, "images": n, "chunk": chunk,
            "s_per_image": wall * scale / n, "cpu_s_per_image": cpu * scale / n,
            "gflop_per_image": gflop / n, "gflops": gflop_measured / wall,
            "gflop_per_cpu_s": gflop_measured / cpu, **parts}


def efficiency(part: dict, rates: dict, threads: int) -> dict:
    """Fractions of the measured float32 sgemm rate (wall clock, and per CPU-second)."""
    r = rates["float32"].get(str(threads))
    if not r or "gflops" not in part:
        return {}
    return {"frac_sgemm": part["gflops"] / r["gflops_best"],
            "frac_sgemm_cpu": part["gflop_per_cpu_s"] / r["gflops_per_cpu_s_best"]}


@dataclass
class Variant:
    """One row: an implementation ('fast', 'reference', 'fast+ckpt', 'fast+bf16') of a preset."""
    impl: str
    config: object
    inference: bool = True       # also measure the decoder and the IWAE bound
    model: object = None

    def context(self):
        return use_reference(self.model) if self.impl.startswith("reference") else contextlib.nullcontext()

    def wrap(self, fn: Callable[[], object]) -> Callable[[], object]:
        def run():
            with self.context():
                return fn()
        return run


def measure_preset(name: str, variants: list[Variant], plan: Plan, threads: int, rates: dict,
                   log) -> list[dict]:
    """Measure every variant of one preset; the timed calls of the variants are interleaved."""
    t0 = time.perf_counter()
    rows = []
    with num_threads(threads):
        for v in variants:
            v.model = build(v.config)
            if v.impl.startswith("reference") and not isinstance(v.model, VNCA):
                raise ValueError("the reference implementation applies to NCA decoders only")
            rows.append({"preset": name, "impl": v.impl, "threads": threads,
                         "bf16": bool(getattr(v.config, "bf16", False)),
                         "checkpointing": bool(getattr(v.config, "checkpointing", False)),
                         "parameters": v.model.n_parameters(), "config": config_to_dict(v.config),
                         "decoder": None, "iwae": None})
        # --- training update ---
        c = variants[0].config
        batch = plan.batch or c.batch_size
        x = fake_images(c, batch)
        updates = {v.impl: v.wrap(TrainingUpdate(v.model, x)) for v in variants}
        info = {k: instrumented(fn) for k, fn in updates.items()}   # first update: counted, tracked
        times = interleaved(updates, plan.warmup, plan.repeats)
        for row, v in zip(rows, variants):
            t = {"batch": batch, "steps": train_steps(c), **info[v.impl], **times[v.impl]}
            t.update(updates_per_s=1 / t["wall_s"], images_per_s=batch / t["wall_s"],
                     gflops=t["gflop"] / t["wall_s"], gflop_per_cpu_s=t["gflop"] / t["cpu_s"])
            t.update(efficiency(t, rates, threads))
            row["train"] = t
            log(f"  {name:24s} {v.impl:10s} train  {t['wall_s']:8.3f} s/update (cpu {t['cpu_s']:.3f} s), "
                f"{t['gflop']:.1f} GFLOP, peak tensors {t['peak_tensor_mib']:.0f} MiB")
        # --- decoder forward ---
        inf = [(row, v) for row, v in zip(rows, variants) if v.inference]
        dbatch = plan.decoder_batch or batch
        z = torch.randn(dbatch, c.z_dim, generator=torch.Generator().manual_seed(2))

        def decoder_fn(model):
            def run():
                with torch.inference_mode():
                    model.decode(z)
            return run

        decs = {v.impl: v.wrap(decoder_fn(v.model)) for _, v in inf}
        gflop = {k: count_gflop(fn) for k, fn in decs.items()}
        times = interleaved(decs, 1, max(1, plan.repeats))
        for row, v in inf:
            t, g = times[v.impl], gflop[v.impl]
            d = {"batch": dbatch, "gflop_per_image": g / dbatch, "ms_per_image": 1e3 * t["wall_s"] / dbatch,
                 "cpu_ms_per_image": 1e3 * t["cpu_s"] / dbatch, "gflops": g / t["wall_s"],
                 "gflop_per_cpu_s": g / t["cpu_s"], "wall_all": t["wall_all"]}
            d.update(efficiency(d, rates, threads))
            row["decoder"] = d
            log(f"  {name:24s} {v.impl:10s} decode {d['ms_per_image']:8.2f} ms/image")
        # --- importance-weighted bound ---
        for row, v in inf:
            with v.context():
                w = measure_iwae(v.model, v.config, plan)
            w.update(efficiency(w, rates, threads))
            row["iwae"] = w
            est = f", est. from k={plan.iwae_k_measured}" if w["extrapolated"] else ""
            log(f"  {name:24s} {v.impl:10s} IWAE   {w['s_per_image']:8.2f} s/image (k={plan.iwae_k}{est})")
    for row in rows:
        row["preset_seconds"] = time.perf_counter() - t0
    return rows


def iwae_sweep(name: str, config, plan: Plan, threads: int, chunks: list[int], log) -> list[dict]:
    """IWAE time and peak tensor memory per image for several chunk sizes, and without inference_mode."""
    model = build(config)
    out = []
    with num_threads(threads):
        for chunk, inference in [(c, True) for c in chunks] + [(None, False)]:
            r = measure_iwae(model, config, plan, chunk=chunk, inference=inference)
            x = fake_images(config, plan.iwae_images, seed=3)
            ctx = torch.inference_mode if inference else contextlib.nullcontext
            malloc_trim()
            with TensorMemoryTracker() as mem, ctx():
                model.iwae(x, k=plan.iwae_k_measured, chunk=chunk)
            r.update(preset=name, threads=threads, inference_mode=inference, peak_tensor_mib=mem.peak / MiB)
            out.append(r)
            log(f"  IWAE sweep {name}: chunk={chunk} inference_mode={inference}: "
                f"{r['s_per_image']:.2f} s/image, peak tensors {r['peak_tensor_mib']:.0f} MiB")
    return out


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------
def _fmt(v, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def format_report(result: dict) -> str:
    m, rates = result["machine"], result["matmul"]
    lines = [f"VNCA CPU benchmark  {result['started']}  ({result['wall_minutes']:.1f} min)",
             f"CPU: {m['model']}, {m['logical_cpus']} logical CPUs, SIMD: {' '.join(m['simd_flags'])}; "
             f"torch {m['torch']} ({m['torch_cpu_capability']})",
             f"load average at start {result['load_start']}, at end {result['load_end']} "
             f"(other jobs share this machine: wall-clock numbers are noisy)", ""]
    lines.append("Matrix-multiply rate (n x n x n, best of 3, float32 measured at the start and the end of the "
                 "run, the better kept; GFLOP/s wall clock, and per CPU-second):")
    for dtype, per in rates.items():
        for th, r in per.items():
            lines.append(f"  {dtype:9s} {th} thread(s), n={r['n']:5d}: {r['gflops_best']:8.2f} GFLOP/s "
                         f"(median {r['gflops_median']:.2f}; {r['gflops_per_cpu_s_best']:.2f} per CPU-s)"
                         + (f" [{r['measured_at']}]" if "measured_at" in r else ""))
    b = result["bf16"]
    lines.append(f"bf16: {b['message']}")
    lines.append("")
    hdr = (f"{'preset':24s} {'impl':14s} {'thr':>3s} {'batch':>5s} {'upd/s':>7s} {'img/s':>7s} "
           f"{'s/upd':>7s} {'cpu s':>7s} {'GFLOP':>8s} {'GFLOP/s':>8s} {'%sgemm':>7s} {'%cpu':>6s} "
           f"{'tensors':>8s} {'RSS+':>7s}")
    lines += ["Training update (after warm-up; median; %sgemm = achieved / measured float32 sgemm rate at the "
              "same thread count, wall clock; %cpu = the same per CPU-second; memory in MiB: peak tensors "
              "allocated by one update, and peak RSS growth)", hdr, "-" * len(hdr)]
    for r in result["rows"]:
        t = r["train"]
        lines.append(f"{r['preset']:24s} {r['impl']:14s} {r['threads']:3d} {t['batch']:5d} "
                     f"{t['updates_per_s']:7.3f} {t['images_per_s']:7.2f} {t['wall_s']:7.3f} {t['cpu_s']:7.3f} "
                     f"{t['gflop']:8.2f} {t['gflops']:8.2f} {_fmt(100 * t.get('frac_sgemm', math.nan), '6.1f')}% "
                     f"{_fmt(100 * t.get('frac_sgemm_cpu', math.nan), '5.1f')}% "
                     f"{t['peak_tensor_mib']:8.1f} {t['rss_delta_mib']:7.1f}")
    hdr = (f"{'preset':24s} {'impl':14s} {'thr':>3s} {'dec ms/img':>10s} {'GFLOP/img':>9s} {'%sgemm':>7s} "
           f"{'IWAE s/img':>10s} {'k':>4s} {'GFLOP/img':>10s} {'%sgemm':>7s} {'%cpu':>6s}")
    lines += ["", "Inference (torch.inference_mode): decoder forward per image; IWAE bound per test image "
              "(k samples; * = timed at fewer samples and extrapolated)", hdr, "-" * len(hdr)]
    for r in result["rows"]:
        d, w = r["decoder"], r["iwae"]
        if d is None:
            continue
        est = "*" if w["extrapolated"] else " "
        lines.append(f"{r['preset']:24s} {r['impl']:14s} {r['threads']:3d} {d['ms_per_image']:10.2f} "
                     f"{d['gflop_per_image']:9.3f} {_fmt(100 * d.get('frac_sgemm', math.nan), '6.1f')}% "
                     f"{w['s_per_image']:9.2f}{est} {w['k']:4d} {w['gflop_per_image']:10.2f} "
                     f"{_fmt(100 * w.get('frac_sgemm', math.nan), '6.1f')}% "
                     f"{_fmt(100 * w.get('frac_sgemm_cpu', math.nan), '5.1f')}%")
    if any(r["iwae"] and r["iwae"]["extrapolated"] for r in result["rows"]):
        lines.append("  * estimated: timed with k_measured samples, scaled by the counted FLOPs of k samples")
    comp = comparisons(result["rows"])
    if comp:
        lines += ["", "Side by side (same preset and threads):"] + ["  " + c for c in comp]
    if result.get("iwae_sweep"):
        lines += ["", "IWAE chunk sweep (k samples per image, decoded `chunk` at a time; chunk None = "
                  "the package default, max(1, 64 // batch)):"]
        for r in result["iwae_sweep"]:
            lines.append(f"  {r['preset']:22s} thr={r['threads']} chunk={str(r['chunk']):>4s} "
                         f"inference_mode={str(r['inference_mode']):5s} k={r['k_measured']:4d}: "
                         f"{r['s_per_image']:7.2f} s/image, {r['peak_tensor_mib']:7.1f} MiB peak tensors")
    return "\n".join(lines)


def comparisons(rows: list[dict]) -> list[str]:
    out = []
    base = {(r["preset"], r["threads"]): r for r in rows if r["impl"] == "fast"}
    for r in rows:
        b = base.get((r["preset"], r["threads"]))
        if b is None or r is b:
            continue
        t, bt = r["train"], b["train"]
        line = (f"{r['preset']} ({r['threads']} thr): {r['impl']} / fast: training update time "
                f"{t['wall_s'] / bt['wall_s']:.2f}x (cpu {t['cpu_s'] / bt['cpu_s']:.2f}x), "
                f"peak tensor memory {t['peak_tensor_mib'] / bt['peak_tensor_mib']:.2f}x")
        if r["decoder"] is not None:
            line += (f"; decoder {r['decoder']['ms_per_image'] / b['decoder']['ms_per_image']:.2f}x; "
                     f"IWAE {r['iwae']['s_per_image'] / b['iwae']['s_per_image']:.2f}x")
        out.append(line)
    return out


def bf16_decision(args, rates: dict, threads: int, machine: dict | None = None) -> dict:
    machine = machine or {}
    units = [n for n, k in (("AVX512-BF16", "has_avx512_bf16"), ("AMX-BF16", "has_amx_bf16")) if machine.get(k)]
    hw = f"this CPU has {' and '.join(units)}" if units else "this CPU has neither AVX512-BF16 nor AMX"
    f32 = rates["float32"][str(threads)]["gflops_best"]
    b16 = rates["bfloat16"][str(threads)]["gflops_best"]
    slow = b16 < f32
    use = bool(args.bf16 and (not slow or args.force_bf16))
    if not args.bf16:
        msg = f"not requested (measured {b16:.2f} GFLOP/s bf16 vs {f32:.2f} float32)"
    elif slow and not args.force_bf16:
        msg = (f"bf16 is slow here: {b16:.2f} GFLOP/s vs {f32:.2f} GFLOP/s float32 ({hw}); "
               f"falling back to float32 (use --force-bf16 to measure it anyway)")
    elif slow:
        msg = (f"bf16 is slow here ({b16:.2f} vs {f32:.2f} GFLOP/s float32; {hw}) but --force-bf16: "
               f"measuring it")
    else:
        msg = f"bf16 measured ({b16:.2f} GFLOP/s vs {f32:.2f} float32)"
    return {"requested": bool(args.bf16), "forced": bool(args.force_bf16), "slow_here": slow, "used": use,
            "bf16_gflops": b16, "float32_gflops": f32, "message": msg}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", help="comma-separated preset names (default: all *_cpu presets and "
                   "mnist_doubling at paper scale; with --quick: " + ",".join(QUICK_PRESETS) + ")")
    p.add_argument("--quick", action="store_true", help="fast smoke run: batch 8, 2 timed updates, small sgemm")
    p.add_argument("--threads", default=None,
                   help="torch threads for the model measurements, or a comma list (default: torch's, "
                   f"now {torch.get_num_threads()})")
    p.add_argument("--bf16", action="store_true", help="add bf16-autocast rows (falls back to float32 with "
                   "a message where the measured bf16 matmul rate is below float32's)")
    p.add_argument("--force-bf16", action="store_true", help="measure bf16 even where it is slow")
    p.add_argument("--checkpointing", action="store_true",
                   help="add activation-checkpointing rows and report the peak-memory saving")
    p.add_argument("--no-reference", action="store_true", help="skip the NCHW F.conv2d reference rows")
    p.add_argument("--paper-reference", action="store_true", help="also run the reference at paper scale")
    p.add_argument("--warmup", type=int, default=1, help="untimed updates after the instrumented one")
    p.add_argument("--repeats", type=int, default=3, help="timed updates per row (median reported)")
    p.add_argument("--iwae-images", type=int, default=1, help="test images for the IWAE timing")
    p.add_argument("--iwae-sweep", action="store_true",
                   help="also time IWAE for chunk sizes 16..128 and without inference_mode (first preset)")
    p.add_argument("--sgemm-n", type=int, default=None, help="matrix size of the sgemm (default 2048)")
    p.add_argument("--json", help="write all results as JSON here")
    p.add_argument("--txt", help="write the printed table here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    started, t_start = time.strftime("%Y-%m-%d %H:%M:%S"), time.perf_counter()
    names = args.presets.split(",") if args.presets else (QUICK_PRESETS if args.quick else default_presets())
    for n in names:
        get_preset(n)                                          # unknown names fail here, with the list
    threads = [int(t) for t in args.threads.split(",")] if args.threads else [torch.get_num_threads()]
    log = lambda s: print(s, flush=True)  # noqa: E731
    result = {"started": started, "argv": sys.argv[1:] if argv is None else list(argv),
              "machine": cpu_info(), "load_start": load_average(), "rows": []}
    n = args.sgemm_n or (1024 if args.quick else 2048)
    log(f"measuring matmul rates (n={n}; bf16 n={n // 4}) ...")
    rate_threads = sorted({1, 2, *threads})
    rates = {"float32": {str(t): matmul_rate(torch.float32, t, n) for t in rate_threads},
             "bfloat16": {str(t): matmul_rate(torch.bfloat16, t, n // 4, repeats=2) for t in rate_threads}}
    result["matmul"] = rates
    result["bf16"] = bf16_decision(args, rates, threads[0], result["machine"])
    log(result["bf16"]["message"])
    for name in names:
        base = get_preset(name)
        plan = plan_for(name, args)
        variants = [Variant("fast", base)]
        if hasattr(base, "checkpointing"):                      # an NCA decoder
            if plan.reference and not args.no_reference:
                variants.append(Variant("reference", base))
            if args.checkpointing:
                variants.append(Variant("fast+ckpt", base.replace(checkpointing=True), inference=False))
            if result["bf16"]["used"]:
                variants.append(Variant("fast+bf16", base.replace(bf16=True)))
        for th in threads:
            result["rows"] += measure_preset(name, [Variant(v.impl, v.config, v.inference) for v in variants],
                                             plan, th, rates, log)
    if args.iwae_sweep:
        name = names[0]
        plan = plan_for(name, args)
        result["iwae_sweep"] = iwae_sweep(name, get_preset(name), plan, threads[0], [16, 32, 64, 128], log)
    # The load of a shared machine changes during a run: measure the float32 rate again and compare every
    # row with the better of the two measurements (the machine's rate when it was least disturbed).
    log("measuring the float32 matmul rate again ...")
    for t in rate_threads:
        start, end = rates["float32"][str(t)], matmul_rate(torch.float32, t, n)
        start["measured_at"], end["measured_at"] = "start", "end"
        result.setdefault("matmul_all", {}).setdefault("float32", {})[str(t)] = [dict(start), end]
        best = max(start, end, key=lambda r: r["gflops_best"])
        best_cpu = max(start["gflops_per_cpu_s_best"], end["gflops_per_cpu_s_best"])
        rates["float32"][str(t)] = {**best, "gflops_per_cpu_s_best": best_cpu}
    for row in result["rows"]:
        for part in ("train", "decoder", "iwae"):
            if row.get(part):
                row[part].update(efficiency(row[part], rates, row["threads"]))
    result["load_end"] = load_average()
    result["wall_minutes"] = (time.perf_counter() - t_start) / 60
    if args.checkpointing:
        result["checkpointing_saving"] = {
            f"{r['preset']}@{r['threads']}": 1 - r["train"]["peak_tensor_mib"] / b["train"]["peak_tensor_mib"]
            for r in result["rows"] if r["impl"] == "fast+ckpt"
            for b in result["rows"] if b["impl"] == "fast" and b["preset"] == r["preset"]
            and b["threads"] == r["threads"]}
    report = format_report(result)
    print("\n" + report)
    if args.checkpointing and result["checkpointing_saving"]:
        print("\nActivation checkpointing, peak tensor memory saved: " + ", ".join(
            f"{k} {100 * v:.0f}%" for k, v in result["checkpointing_saving"].items()))
        report += "\n\nActivation checkpointing, peak tensor memory saved: " + ", ".join(
            f"{k} {100 * v:.0f}%" for k, v in result["checkpointing_saving"].items())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.txt:
        Path(args.txt).parent.mkdir(parents=True, exist_ok=True)
        Path(args.txt).write_text(report + "\n")
    return result


if __name__ == "__main__":
    main()
