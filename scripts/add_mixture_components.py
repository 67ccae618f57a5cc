"""Give a trained RGB VNCA more logistic mixture components without starting over (chapter 10, issue 19).

    python scripts/add_mixture_components.py scripts/resume/noto_doubling_small_weights/checkpoint.safetensors \
        --n-mix 3 --out runs/exp/noto_mix3_init.safetensors

The likelihood reads the first 10 L channels of every cell (chapter 3's layout: L mixture logits, then 3 L
means, 3 L log-scales, 3 L coupling coefficients); the other channels are the cells' private memory. Each
new component needs 10 more channels, and since a cell has |z| channels (z seeds the cells), |z| grows by
10 per component: the result is an ordinary VNCA with n_mix = L_new and z_dim = |z| + 10 (L_new - L_old).

What it computes at first: the old channels move to their places in the new layout (the update rule, the
encoder's outputs and the seed are permuted alike, so the old model is unchanged); a new component starts
as a copy of an old one (its channels get the same updates) whose mixture logit is pushed down by
``--logit-offset`` over the growth, so it starts with a small weight and the likelihood is nearly the old
one. The new latent dimensions start with q(z|x) = N(0, exp(-4)): near 0, 1.5 nats of KL each. Nothing
reads the new channels yet (their incoming weights are 0, with gradients), so training decides their use.
The script writes a weights-only checkpoint for ``--init-from`` with ``--set z_dim=NEW n_mix=L_new``.
"""
from __future__ import annotations

import argparse

import torch

from vnca_tutorial.checkpoint import load_model, read_metadata, save_checkpoint
from vnca_tutorial.model import VNCA, build_model

NEW_LOG_VAR = -4.0   # log variance of q(z|x) on the new latent dimensions at the start


def channel_sources(z_dim: int, old_mix: int, new_mix: int) -> list[tuple[int, bool]]:
    """For every channel of the new layout: (the old channel it comes from, whether it is a new copy).

    Blocks of the layout (chapter 3): logits (L), means (3 L), log-scales (3 L), coefficients (3 L),
    then the memory channels. New component k copies old component k mod L_old."""
    sources = [(k % old_mix, k >= old_mix) for k in range(new_mix)]                   # mixture logits
    for block in range(3):                                                             # means, scales, coeffs
        start = old_mix + 3 * old_mix * block
        sources += [(start + 3 * (k % old_mix) + c, k >= old_mix) for k in range(new_mix) for c in range(3)]
    sources += [(c, False) for c in range(10 * old_mix, z_dim)]                        # memory
    return sources


def add_components(old: VNCA, new: VNCA, logit_offset: float) -> None:
    """Copy ``old`` into ``new`` (n_mix and z_dim larger) channel by channel, in place."""
    o, n = old.config, new.config
    if o.likelihood != "dlogistic" or n.likelihood != "dlogistic":
        raise ValueError("only the RGB likelihood ('dlogistic') has mixture components; "
                         f"got {o.likelihood!r} and {n.likelihood!r}")
    if n.n_mix <= o.n_mix or n.z_dim != o.z_dim + 10 * (n.n_mix - o.n_mix):
        raise ValueError(f"the new model must have more components and 10 more channels for each: "
                         f"n_mix {o.n_mix} -> {n.n_mix} needs z_dim {o.z_dim + 10 * (n.n_mix - o.n_mix)}, "
                         f"got {n.z_dim}")
    sources = channel_sources(o.z_dim, o.n_mix, n.n_mix)
    src = torch.tensor([s for s, _ in sources])                    # (Z_new,) old channel of each
    copy = torch.tensor([c for _, c in sources])                   # (Z_new,) True for the new channels
    new_logits = torch.zeros(n.z_dim, dtype=torch.bool)
    new_logits[o.n_mix:n.n_mix] = True                             # the new components' mixture logits
    old_net, new_net = old.decoder.nca.update_net, new.decoder.nca.update_net
    steps = old.decoder.n_steps
    with torch.no_grad():
        new.encoder.load_state_dict({k: v for k, v in old.encoder.state_dict().items()
                                     if not k.startswith("linear")}, strict=False)
        w, b = old.encoder.linear.weight, old.encoder.linear.bias  # (2 Z_old, F), (2 Z_old,)
        Z = o.z_dim
        new.encoder.linear.weight.copy_(torch.cat([w[:Z][src], w[Z:][src]]))
        new.encoder.linear.bias.copy_(torch.cat([b[:Z][src], b[Z:][src]]))
        new_rows = torch.cat([copy, copy])
        new.encoder.linear.weight[new_rows] = 0                   # new dims: mean 0,
        new.encoder.linear.bias[:n.z_dim][copy] = 0
        new.encoder.linear.bias[n.z_dim:][copy] = NEW_LOG_VAR     # log variance -4
        new_net.load_state_dict({k: v for k, v in old_net.state_dict().items()
                                 if not k.startswith(("perceive", "out"))}, strict=False)
        new_net.perceive.weight.copy_(old_net.perceive.weight[:, src])   # (hidden, Z_new, 3, 3)
        new_net.perceive.weight[:, copy] = 0                             # nothing reads the new channels
        new_net.perceive.bias.copy_(old_net.perceive.bias)
        new_net.out.weight.copy_(old_net.out.weight[src])                # (Z_new, hidden, 1, 1)
        new_net.out.bias.copy_(old_net.out.bias[src])
        new_net.out.bias[new_logits] += logit_offset / steps             # summed over the M (K + 1) steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--n-mix", type=int, required=True, help="the new number of mixture components")
    p.add_argument("--out", required=True, help="where to write the weights-only checkpoint")
    p.add_argument("--logit-offset", type=float, default=-4.0,
                   help="how far below its original the mixture logit of a new component starts (< 0)")
    a = p.parse_args()
    if not a.logit_offset < 0:
        raise SystemExit(f"--logit-offset must be negative (a new component starts with a small weight), "
                         f"got {a.logit_offset}")
    old = load_model(a.checkpoint)
    if not hasattr(old.decoder, "n_doublings"):
        raise SystemExit("only doubling VNCAs (the RGB models) are supported")
    if a.n_mix <= old.config.n_mix:
        raise SystemExit(f"--n-mix must exceed the checkpoint's {old.config.n_mix}, got {a.n_mix}")
    config = old.config.replace(n_mix=a.n_mix, z_dim=old.config.z_dim + 10 * (a.n_mix - old.config.n_mix))
    new = build_model(config)
    add_components(old, new, a.logit_offset)
    step = int(read_metadata(a.checkpoint).get("step", 0))
    save_checkpoint(a.out, new, config, step=step)
    print(f"wrote {a.out}: n_mix {old.config.n_mix} -> {a.n_mix}, z_dim {old.config.z_dim} -> {config.z_dim}")


if __name__ == "__main__":
    main()
