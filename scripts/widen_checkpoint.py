"""Widen the update network of a trained VNCA without changing what it computes (chapter 8, issue 15).

    python scripts/widen_checkpoint.py runs/pretrained/mnist_nondoubling_small/checkpoint.safetensors \
        --hidden 128 --out runs/exp/widened_128.safetensors

The update network is perceive (3x3 conv, C -> hidden) -> ELU or residual blocks -> out (1x1 conv, hidden -> C).
The new hidden units get a fresh random perception (PyTorch's default init) and zero outgoing weights in
``out``, so the widened rule makes exactly the same updates as the trained one (Net2Net's function-preserving
growth, Chen et al. 2016); training then finds a use for the new units. In the residual blocks of a
doubling VNCA the old units keep their weights and read nothing from the new ones (those weights start at
0, and get gradients), while the new units read from all (random). The script writes a weights-only
checkpoint for ``--init-from`` with ``--set hidden=NEW``.
"""
from __future__ import annotations

import argparse

import torch

from vnca_tutorial.checkpoint import load_model, save_checkpoint, read_metadata
from vnca_tutorial.decoders import DoublingDecoder
from vnca_tutorial.model import build_model
from vnca_tutorial.nca import UpdateNetwork


def widen_update_network(old: UpdateNetwork, new: UpdateNetwork) -> None:
    """Copy ``old`` into the first units of the wider ``new``; what the old units read from the new ones,
    and the new units' outgoing weights in ``out``, become 0 (the same updates, exactly)."""
    if old.n_blocks != new.n_blocks:
        raise ValueError(f"the networks differ in residual blocks ({old.n_blocks} and {new.n_blocks})")
    h = old.perceive.out_channels                       # old width
    if new.perceive.out_channels < h:
        raise ValueError(f"the new width ({new.perceive.out_channels}) is below the old one ({h})")
    with torch.no_grad():
        new.perceive.weight[:h] = old.perceive.weight    # (hidden, C, 3, 3)
        new.perceive.bias[:h] = old.perceive.bias
        for old_block, new_block in zip(old.blocks, new.blocks):
            for name in ("conv1", "conv2"):              # (hidden, hidden, 1, 1): old units read old units
                o, n = getattr(old_block, name), getattr(new_block, name)
                n.weight[:h, h:] = 0
                n.weight[:h, :h] = o.weight
                n.bias[:h] = o.bias
        new.out.weight.zero_()                           # (C, hidden, 1, 1)
        new.out.weight[:, :h] = old.out.weight
        new.out.bias.copy_(old.out.bias)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--hidden", type=int, required=True, help="the new width of the update network")
    p.add_argument("--out", required=True, help="where to write the widened weights-only checkpoint")
    p.add_argument("--seed", type=int, default=0, help="seed of the new units' random perception")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    old = load_model(a.checkpoint)
    config = old.config.replace(hidden=a.hidden)
    new = build_model(config)
    old_state = old.state_dict()
    new.load_state_dict({k: v for k, v in old_state.items() if "update_net" not in k}, strict=False)
    widen_update_network(old.decoder.nca.update_net, new.decoder.nca.update_net)
    z = torch.randn(4, config.z_dim)                    # check: the same decoded states, step for step
    steps = None if isinstance(old.decoder, DoublingDecoder) else 20   # a doubling decoder's are fixed
    for model in (old, new):
        model.decoder.nca.bf16 = False                  # in float32: bf16 rounds the two widths differently
    with torch.no_grad():
        before, after = old.decoder(z, steps=steps), new.decoder(z, steps=steps)
    same = torch.allclose(before, after, rtol=1e-5, atol=1e-5 * before.abs().max().item())
    new.decoder.nca.bf16 = config.bf16
    if not same:
        raise SystemExit("the widened network does not reproduce the original: not written")
    step = int(read_metadata(a.checkpoint).get("step", 0))
    save_checkpoint(a.out, new, config, step=step)
    print(f"wrote {a.out}: hidden {old.config.hidden} -> {a.hidden}, same decoded states on 4 prior samples")


if __name__ == "__main__":
    main()
