"""Before/after measurement of candidate changes to the NCA step, in one run, interleaved.

Variants, each applied to its own copy of the same model (same weights):

* ``package``: `vnca_tutorial.nca` as it is. The state is converted to channels-last inside u only, so a
  NCHW state -- every pool-training batch, which `torch.cat` makes NCHW -- is converted at every step, and
  the residual add keeps the result NCHW;
* ``cl-step``: `NCA.step` makes the state channels-last once, before the step, so that it stays so;
* ``cl-step+grad-hook``: also converts the incoming gradient of every step's output to channels-last (the
  likelihood's channel slice sends a NCHW gradient into the last step);
* ``inplace-elu``: ELU computed in place on the output of the layer before it (which no backward formula
  needs), so one activation per ELU is not stored.

None of them is applied in the package: on this machine none measured faster than ``package`` beyond the
noise (see benchmarks/README.md); ``inplace-elu`` saves memory.

It measures one training update of each preset (as benchmarks/benchmark.py does: pool training for the
non-doubling presets), alternating the variants update by update, and reports median/min process-CPU and
wall-clock seconds, the peak tensor memory of one update, and the largest difference of the loss and
gradients from ``before`` (the variants compute the same function).

    python benchmarks/before_after.py --threads 1 --repeats 7 --json benchmarks/results/before_after.json
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark as B  # noqa: E402
import instruments as I  # noqa: E402

from vnca_tutorial.nca import NCA, per_cell  # noqa: E402


def step_channels_last(self: NCA, state: Tensor) -> Tensor:
    """NCA.step, with the state made channels-last (a no-op when it already is) before the step."""
    state = state.contiguous(memory_format=torch.channels_last)
    mask = self.update_mask(state)   # p_update < 1: which cells fire, drawn as NCA.step draws it
    if self.checkpointing and torch.is_grad_enabled() and state.requires_grad:
        return checkpoint(self._step, state, mask, use_reentrant=False)
    return self._step(state, mask)


def _channels_last_grad(grad: Tensor) -> Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


def step_grad_hook(self: NCA, state: Tensor) -> Tensor:
    out = step_channels_last(self, state)
    if out.requires_grad:
        out.register_hook(_channels_last_grad)
    return out


def inplace_elu_forward(net, state: Tensor) -> Tensor:
    state = state.contiguous(memory_format=torch.channels_last)
    h = net.perceive(state).permute(0, 2, 3, 1)
    if net.n_blocks:
        for block in net.blocks:
            h = h + per_cell(block.conv2, F.elu(per_cell(block.conv1, h), inplace=True))
    else:
        h = F.elu(h, inplace=True)
    return per_cell(net.out, h).permute(0, 3, 1, 2)


def apply_variant(model, name: str):
    nca = model.decoder.nca
    if name == "cl-step":
        nca.step = types.MethodType(step_channels_last, nca)
    elif name == "cl-step+grad-hook":
        nca.step = types.MethodType(step_grad_hook, nca)
    elif name == "inplace-elu":
        nca.update_net.forward = types.MethodType(inplace_elu_forward, nca.update_net)
    return model


VARIANTS = ["package", "cl-step", "cl-step+grad-hook", "inplace-elu"]


def grads(model) -> list[Tensor]:
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="mnist_nondoubling_cpu,mnist_doubling_cpu")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batch", type=int, default=None, help="default: the preset's")
    p.add_argument("--json")
    p.add_argument("--txt")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    result = {"threads": args.threads, "repeats": args.repeats, "machine": I.cpu_info(),
              "load_start": I.load_average(), "presets": {}}
    lines = [f"{result['machine']['description']}, torch {torch.__version__}"]
    for name in args.presets.split(","):
        config = B.get_preset(name)
        base = B.build(config)
        with torch.no_grad():            # a non-trivial update rule, so that the steps do something
            base.decoder.nca.update_net.out.weight.normal_(0, 0.02)
        x = B.fake_images(config, args.batch or config.batch_size)
        models = {v: apply_variant(copy.deepcopy(base), v) for v in variants}
        updates = {v: B.TrainingUpdate(m, x) for v, m in models.items()}
        # equal results: the first update of every variant from identical states and random numbers
        first = {}
        for v, u in updates.items():
            torch.manual_seed(123)
            loss = u()
            first[v] = (loss, grads(u.model))
        ref_loss, ref_grads = first[variants[0]]
        diffs = {v: {"loss": abs(l - ref_loss),
                     "max_rel_grad_diff": max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
                                              for a, b in zip(g, ref_grads))}
                 for v, (l, g) in first.items()}
        memory = {}
        for v, u in updates.items():
            I.malloc_trim()
            with I.TensorMemoryTracker() as mem:
                u()
            memory[v] = mem.peak / I.MiB
        times = B.interleaved(updates, 1, args.repeats)
        res = {v: {**times[v], "cpu_min_s": min(times[v]["cpu_all"]), "wall_min_s": min(times[v]["wall_all"]),
                   "peak_tensor_mib": memory[v], **diffs[v]} for v in variants}
        result["presets"][name] = res
        lines.append(f"{name} (batch {len(x)}, {args.threads} thread(s), {args.repeats} interleaved updates; "
                     f"CPU and wall seconds per update, median / min):")
        b = res[variants[0]]
        for v in variants:
            r = res[v]
            lines.append(f"  {v:18s} cpu {r['cpu_s']:6.3f} / {r['cpu_min_s']:6.3f}  wall {r['wall_s']:6.3f} / "
                         f"{r['wall_min_s']:6.3f}   cpu vs {variants[0]} {r['cpu_s'] / b['cpu_s']:5.2f}x   "
                         f"peak tensors {r['peak_tensor_mib']:7.1f} MiB   max rel. grad diff "
                         f"{r['max_rel_grad_diff']:.1e}")
        print("\n".join(lines[-len(variants) - 1:]), flush=True)
    result["load_end"] = I.load_average()
    lines.append(f"load average at start {result['load_start']}, at end {result['load_end']}")
    report = "\n".join(lines)
    print(lines[-1])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.txt:
        Path(args.txt).write_text(report + "\n")
    return result


if __name__ == "__main__":
    main()
