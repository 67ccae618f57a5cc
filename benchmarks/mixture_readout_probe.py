"""Would more logistic components help a trained emoji VNCA? A probe on its frozen final cell states.

    python benchmarks/mixture_readout_probe.py scripts/resume/noto_doubling_small_weights/checkpoint.safetensors

The model is frozen. For 1,000 random "fit" emoji (the images it trained on) and all 265 "valid" emoji, one
z ~ q(z|x) per image is grown into final cell states (B, |z|, 64, 64). Then a linear readout (a 1x1 conv)
from all |z| channels to the 10 L parameters of an L-component discretized logistic mixture is trained on
the fit states; it starts as the model's own readout (the first 10 channels) for every component, the
copies nudged apart by a little noise. Printed: -log p(x|z) of the valid emoji in bits/dim (the KL is the
same for every readout) after each pass over the fit states. L = 1 measures what a linear recombination
of the channels buys; L > 1 what a mixture buys on states that were never trained for one (chapter 10).
Monitoring only: the test emoji are not used.
"""
from __future__ import annotations

import argparse

import torch
from torch import Tensor, nn

from vnca_tutorial.bounds import bits_per_dim
from vnca_tutorial.checkpoint import load_model
from vnca_tutorial.data import load_dataset, subset
from vnca_tutorial.hardware import cpu_description
from vnca_tutorial.likelihoods import DiscretizedLogisticMixture


def final_states(model, x: Tensor, batch: int = 16) -> Tensor:  # (N, 3, H, W) uint8 -> (N, Z, H, W) float16
    with torch.no_grad():
        return torch.cat([model.decode(model.q_z_given_x(x[i:i + batch]).rsample()).half()
                          for i in range(0, len(x), batch)])


def readout(channels: int, n_mix: int, noise: float = 1e-2) -> nn.Conv2d:
    """A 1x1 conv whose every component starts as the model's own readout of channels 0..9."""
    head = nn.Conv2d(channels, 10 * n_mix, 1)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        for k in range(n_mix):          # the layout of chapter 3: logits, means, log-scales, coefficients
            rows = [k] + [n_mix * (1 + 3 * block) + 3 * k + c for block in range(3) for c in range(3)]
            for source, row in enumerate(rows):
                head.weight[row, source] = 1.0
        if n_mix > 1:
            head.weight.add_(noise * torch.randn_like(head.weight))
    return head


def readout_bpd(head: nn.Conv2d, states: Tensor, x: Tensor, n_mix: int) -> float:
    """-log p(x|z) under the readout, in bits per dimension (the mean over the images)."""
    with torch.no_grad():
        log_p = sum(DiscretizedLogisticMixture(head(states[i:i + 32].float()), n_mix).log_prob(x[i:i + 32]).sum()
                    for i in range(0, len(x), 32))
    return bits_per_dim(log_p.item() / len(x), x[0].numel())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--components", type=int, nargs="+", default=[1, 2, 3, 5])
    p.add_argument("--fit-images", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=1e-3)
    a = p.parse_args()
    if min(a.components) < 1 or a.fit_images < 1 or a.epochs < 1 or not 0 < a.lr < 1:
        raise SystemExit("--components, --fit-images and --epochs must be positive and --lr in (0, 1)")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = load_model(a.checkpoint).eval()
    model.decoder.nca.bf16 = False
    if model.config.likelihood != "dlogistic" or model.config.n_mix != 1:
        raise SystemExit("the probe reads an RGB model with one logistic component")
    fit = subset(load_dataset("noto_emoji", "fit"), a.fit_images, seed=3).images
    valid = load_dataset("noto_emoji", "valid").images
    s_fit, s_valid = final_states(model, fit), final_states(model, valid)
    print(f"one thread of {cpu_description()}; {len(fit)} fit and {len(valid)} valid emoji, one z each; "
          f"valid -log p(x|z) in bits/dim after each pass")
    for n_mix in a.components:
        torch.manual_seed(1)
        head = readout(model.config.z_dim, n_mix)
        curve = [readout_bpd(head, s_valid, valid, n_mix)]
        opt = torch.optim.Adam(head.parameters(), lr=a.lr)
        for _ in range(a.epochs):
            for batch in torch.randperm(len(fit)).split(16):
                loss = -DiscretizedLogisticMixture(head(s_fit[batch].float()), n_mix).log_prob(fit[batch]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            curve.append(readout_bpd(head, s_valid, valid, n_mix))
        print(f"L = {n_mix}: start {curve[0]:.3f}, passes " + " ".join(f"{c:.3f}" for c in curve[1:])
              + f"; best {min(curve[1:]):.3f}", flush=True)


if __name__ == "__main__":
    main()
