"""GPU (CUDA) benchmark of the VNCA: the CPU benchmark's table, plus bf16 autocast and torch.compile.

UNTESTED ON A GPU. It was written on a machine without one: it imports, ``--help`` works, and its
non-compiled code path runs with ``--device cpu`` (a smoke test of the logic, not a benchmark), but no
number in this repository comes from it. Expect to fix small things on the first GPU run; each row is
measured in a try/except, so one failing variant (say, CUDA graphs) is reported and the others still run.

For every selected preset (default: the paper-scale presets ``mnist_doubling`` and ``mnist_nondoubling``)
it measures, on one GPU, one training update (as `vnca_tutorial.train` does it; non-doubling presets with a
filled pool and T at the mean of its range), the decoder's forward pass per image and the k = 128 IWAE bound
per test image, for these variants, side by side:

* ``fast``: the package (channels-last per-cell matrix multiplies);
* ``reference``: the same update network as NCHW ``F.conv2d`` 1x1 convolutions (benchmark.reference_update);
* ``fast+bf16`` (``--bf16``): the config's ``bf16=True``, bfloat16 autocast around the update network;
* ``fast+compile`` (``--compile``): the update network wrapped in ``torch.compile`` (``--compile-target
  decoder`` compiles the whole unrolled decoder instead);
* ``fast+cudagraphs`` (``--cuda-graphs``): ``torch.compile(mode="reduce-overhead")``, which records CUDA
  graphs (``torch.compiler.cudagraph_mark_step_begin()`` is called before every update);
* ``fast+ckpt`` (``--checkpointing``): activation checkpointing, for the memory saving.

Speed is CUDA-synchronised wall clock (median of the timed updates after warm-up); memory is
``torch.cuda.max_memory_allocated`` during one update above what was allocated before it; FLOPs are counted
with ``FlopCounterMode`` on the eager model (a compiled model does the same arithmetic); efficiency is the
achieved rate over the measured dense matmul rates (float32 without TF32, TF32, and bfloat16, 8192^3).

    python benchmarks/gpu_benchmark.py --bf16 --compile --cuda-graphs --json gpu.json --txt gpu.txt
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark as B  # noqa: E402
import instruments as I  # noqa: E402

from vnca_tutorial.config import get_preset  # noqa: E402

DEFAULT_PRESETS = ["mnist_doubling", "mnist_nondoubling"]


def sync_for(device: str):
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def gpu_rates(device: str, n: int) -> dict:
    """Dense matmul rates: float32 (TF32 off), TF32, bfloat16."""
    sync = sync_for(device)
    rates = {}
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        rates["float32"] = I.matmul_rate(torch.float32, torch.get_num_threads(), n, 5, device, sync)
        if device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = True
            rates["tf32"] = I.matmul_rate(torch.float32, torch.get_num_threads(), n, 5, device, sync)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    rates["bfloat16"] = I.matmul_rate(torch.bfloat16, torch.get_num_threads(), n, 5, device, sync)
    return rates


class Peak:
    """Peak device memory allocated inside the block, above what was allocated at entry."""

    def __init__(self, device: str) -> None:
        self.device, self.mib = device, float("nan")

    def __enter__(self):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.tracker = I.TensorMemoryTracker().__enter__()
        return self

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.base) / I.MiB
        else:
            self.tracker.__exit__(*exc)
            self.mib = self.tracker.peak / I.MiB


def apply_compile(model, mode: str | None, target: str):
    """Wrap the update network (or the whole decoder) of ``model`` in torch.compile."""
    kwargs = {} if mode is None else {"mode": mode}
    if target == "decoder":
        model.decoder = torch.compile(model.decoder, **kwargs)
    else:
        nca = model.decoder.nca
        nca.update_net = torch.compile(nca.update_net, **kwargs)
    return model


def measure_variant(name, impl, config, plan: B.Plan, device: str, compile_mode, compile_target,
                    eager_flops: dict | None, log) -> dict:
    sync = sync_for(device)
    cudagraphs = compile_mode == "reduce-overhead"
    mark = torch.compiler.cudagraph_mark_step_begin if cudagraphs else (lambda: None)
    model = B.build(config, device=device)
    variant = B.Variant(impl, config, model=model)
    if compile_mode is not False:
        apply_compile(model, compile_mode, compile_target)
    row = {"preset": name, "impl": impl, "device": device, "compile_mode": compile_mode,
           "bf16": bool(config.bf16), "checkpointing": bool(config.checkpointing)}
    batch = plan.batch or config.batch_size
    x = B.fake_images(config, batch, device=device)
    update = B.TrainingUpdate(model, x)

    def run_update():
        mark()
        with variant.context():
            update()

    t0 = time.perf_counter()
    run_update()                                          # first call: compilation, cuDNN autotuning
    sync()
    row["first_update_s"] = time.perf_counter() - t0
    if eager_flops is None:
        with FlopCounterMode(display=False) as fc:
            run_update()
        gflop = fc.get_total_flops() / 1e9
    else:
        gflop = eager_flops["train"]
    with Peak(device) as peak:
        run_update()
    t = B.interleaved({impl: run_update}, plan.warmup, plan.repeats, sync)[impl]
    row["train"] = {"batch": batch, "steps": B.train_steps(config), "gflop": gflop,
                    "peak_mib": peak.mib, **t, "updates_per_s": 1 / t["wall_s"],
                    "images_per_s": batch / t["wall_s"], "gflops": gflop / t["wall_s"]}
    log(f"  {name:20s} {impl:18s} train {t['wall_s'] * 1e3:9.2f} ms/update, {gflop:.1f} GFLOP, "
        f"peak {peak.mib:.0f} MiB")
    if config.checkpointing:
        row["decoder"] = row["iwae"] = None
        return row
    dbatch = plan.decoder_batch or batch
    z = torch.randn(dbatch, config.z_dim, generator=torch.Generator().manual_seed(2)).to(device)

    def run_decoder():
        mark()
        with variant.context(), torch.inference_mode():
            model.decode(z)

    if eager_flops is None:
        with FlopCounterMode(display=False) as fc:
            run_decoder()
        dec_gflop = fc.get_total_flops() / 1e9
    else:
        dec_gflop = eager_flops["decoder"]
    t = B.interleaved({impl: run_decoder}, 2, max(3, plan.repeats), sync)[impl]
    row["decoder"] = {"batch": dbatch, "gflop_per_image": dec_gflop / dbatch,
                      "ms_per_image": 1e3 * t["wall_s"] / dbatch, "gflops": dec_gflop / t["wall_s"]}
    xi = B.fake_images(config, plan.iwae_images, seed=3, device=device)

    def run_iwae(k):
        mark()
        with variant.context(), torch.inference_mode():
            model.iwae(xi, k=k, generator=torch.Generator(device=device).manual_seed(0))

    run_iwae(plan.iwae_k)
    sync()
    t = B.interleaved({impl: lambda: run_iwae(plan.iwae_k)}, 0, max(1, plan.repeats), sync)[impl]
    if eager_flops is None:
        with variant.context():
            iwae_gflop, parts = B.iwae_gflop(model, xi, plan.iwae_k)
    else:
        iwae_gflop, parts = eager_flops["iwae"], {}
    row["iwae"] = {"k": plan.iwae_k, "images": len(xi), "s_per_image": t["wall_s"] / len(xi),
                   "gflop_per_image": iwae_gflop / len(xi), "gflops": iwae_gflop / t["wall_s"], **parts}
    log(f"  {name:20s} {impl:18s} decode {row['decoder']['ms_per_image']:8.3f} ms/image, IWAE k={plan.iwae_k} "
        f"{row['iwae']['s_per_image']:.3f} s/image")
    return row


def format_table(result: dict) -> str:
    rates = result["matmul"]
    lines = [f"VNCA GPU benchmark {result['started']} on {result['device_name']}", "Matmul rates (GFLOP/s): "
             + ", ".join(f"{k} {v['gflops_best']:.0f}" for k, v in rates.items()), ""]
    hdr = (f"{'preset':20s} {'impl':18s} {'ms/upd':>9s} {'img/s':>9s} {'GFLOP/s':>9s} {'%fp32':>6s} "
           f"{'%tf32':>6s} {'%bf16':>6s} {'peak MiB':>9s} {'dec ms/img':>10s} {'IWAE s/img':>10s}")
    lines += [hdr, "-" * len(hdr)]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"{r['preset']:20s} {r['impl']:18s} FAILED: {r['error'].splitlines()[-1][:80]}")
            continue
        t = r["train"]
        pct = lambda key: (f"{100 * t['gflops'] / rates[key]['gflops_best']:5.1f}%"  # noqa: E731
                           if key in rates else "    -")
        dec = "-" if r["decoder"] is None else f"{r['decoder']['ms_per_image']:.3f}"
        iw = "-" if r["iwae"] is None else f"{r['iwae']['s_per_image']:.3f}"
        lines.append(f"{r['preset']:20s} {r['impl']:18s} {t['wall_s'] * 1e3:9.2f} {t['images_per_s']:9.1f} "
                     f"{t['gflops']:9.1f} {pct('float32')} {pct('tf32')} {pct('bfloat16')} "
                     f"{t['peak_mib']:9.0f} {dec:>10s} {iw:>10s}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=",".join(DEFAULT_PRESETS), help="comma-separated preset names")
    p.add_argument("--device", default="cuda", help="cuda (default) or cuda:N; 'cpu' only to smoke-test")
    p.add_argument("--bf16", action="store_true", help="add bf16-autocast rows")
    p.add_argument("--compile", action="store_true", help="add torch.compile rows (mode default)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="add torch.compile(mode='reduce-overhead') rows (CUDA graphs)")
    p.add_argument("--compile-target", choices=["update_net", "decoder"], default="update_net")
    p.add_argument("--checkpointing", action="store_true", help="add activation-checkpointing rows")
    p.add_argument("--no-reference", action="store_true", help="skip the NCHW F.conv2d reference rows")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls/convolutions in the model rows")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--iwae-images", type=int, default=4)
    p.add_argument("--matmul-n", type=int, default=8192)
    p.add_argument("--json")
    p.add_argument("--txt")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("gpu_benchmark.py needs a CUDA GPU (torch.cuda.is_available() is False here); "
                 "use benchmarks/benchmark.py on a CPU")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cudnn.benchmark = True
    log = lambda s: print(s, flush=True)  # noqa: E731
    result = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[1:] if argv is None else argv,
              "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "rows": []}
    result["matmul"] = gpu_rates(device, args.matmul_n if device.startswith("cuda") else 512)
    log("matmul: " + ", ".join(f"{k} {v['gflops_best']:.0f} GFLOP/s" for k, v in result["matmul"].items()))
    plan = B.Plan(warmup=args.warmup, repeats=args.repeats, iwae_images=args.iwae_images)
    for name in args.presets.split(","):
        base = get_preset(name)
        nca = hasattr(base, "checkpointing")
        variants = [("fast", base, False)]
        if nca and not args.no_reference:
            variants.append(("reference", base, False))
        if nca and args.bf16:
            variants.append(("fast+bf16", base.replace(bf16=True), False))
        if nca and args.compile:
            variants.append(("fast+compile", base, None))
            if args.bf16:
                variants.append(("fast+bf16+compile", base.replace(bf16=True), None))
        if nca and args.cuda_graphs:
            variants.append(("fast+cudagraphs", base, "reduce-overhead"))
            if args.bf16:
                variants.append(("fast+bf16+cudagraphs", base.replace(bf16=True), "reduce-overhead"))
        if nca and args.checkpointing:
            variants.append(("fast+ckpt", base.replace(checkpointing=True), False))
        eager = {}
        for impl, cfg, mode in variants:
            try:
                flops = None if mode is False else eager.get(cfg.bf16)
                row = measure_variant(name, impl, cfg, plan, device, mode, args.compile_target, flops, log)
                if mode is False and impl in ("fast", "fast+bf16"):
                    eager[cfg.bf16] = {"train": row["train"]["gflop"],
                                       "decoder": row["decoder"]["gflop_per_image"] * row["decoder"]["batch"],
                                       "iwae": row["iwae"]["gflop_per_image"] * row["iwae"]["images"]}
            except Exception:  # report and go on with the other variants
                row = {"preset": name, "impl": impl, "error": traceback.format_exc()}
                log(f"  {name} {impl} FAILED:\n{row['error']}")
            result["rows"].append(row)
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    table = format_table(result)
    print("\n" + table)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    if args.txt:
        Path(args.txt).write_text(table + "\n")
    return result


if __name__ == "__main__":
    main()
