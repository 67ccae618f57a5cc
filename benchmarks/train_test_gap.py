"""Does a model fit its training images better than the test images? The ELBO (mean of 4 draws of z per
image) on a random subset of the training images and on the whole test set, for checkpoints side by side.

    python benchmarks/train_test_gap.py noto_emoji shipped:noto_doubling_small \\
        scripts/resume/noto_doubling_small_weights/checkpoint.safetensors     # phase 4 (phase 3 in session 13)

A gap that grows while the training loss falls is overfitting: the emoji training set has only 2,656
images (issue 19; the record is benchmarks/results/noto_train_test_gap_session13.txt). Bits per dimension
for RGB data, nats for binary images. Monitoring only: no test figure here chooses anything.
"""
from __future__ import annotations

import argparse
import math

import torch

from vnca_tutorial import pretrained
from vnca_tutorial.checkpoint import load_model
from vnca_tutorial.data import load_dataset, subset
from vnca_tutorial.hardware import cpu_description
from vnca_tutorial.train import evaluate_elbo


def mean_elbo(model, images: torch.Tensor, draws: int = 4) -> float:
    """Mean over images of the ELBO averaged over ``draws`` samples of z, in nats."""
    return sum(evaluate_elbo(model, images, batch_size=32) for _ in range(draws)) / draws


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=["noto_emoji", "binarized_mnist"])
    p.add_argument("checkpoints", nargs="+", help="checkpoint files, or shipped:NAME")
    p.add_argument("--train-images", type=int, default=664)
    p.add_argument("--train-split", default="train",
                   help="where the training images are drawn from (fit: what an --early-stopping run trained on)")
    p.add_argument("--valid", action="store_true", help="also the ELBO on all of the valid split")
    a = p.parse_args()
    torch.set_num_threads(1)
    train = subset(load_dataset(a.dataset, a.train_split), a.train_images, seed=1).images
    test = load_dataset(a.dataset, "test").images
    valid = load_dataset(a.dataset, "valid").images if a.valid else None
    dims = test[0].numel()
    rgb = a.dataset == "noto_emoji"
    unit = (lambda nats: f"{-nats / (dims * math.log(2)):.3f} bits/dim") if rgb else (lambda n: f"{n:.2f} nats")
    print(f"one thread of {cpu_description()}; ELBO, mean of 4 draws of z per image; "
          f"{len(train)} random {a.train_split} images, all {len(test)} test images"
          + (f", all {len(valid)} valid images" if a.valid else "") + "; float32")
    for spec in a.checkpoints:
        model = (pretrained.load(spec.removeprefix("shipped:")) if spec.startswith("shipped:")
                 else load_model(spec)).eval()
        if hasattr(model.decoder, "nca"):
            model.decoder.nca.bf16 = False          # float32, whatever the run trained in
        torch.manual_seed(0)
        on_train, on_test = mean_elbo(model, train), mean_elbo(model, test)
        gap = (on_train - on_test) / (dims * math.log(2)) if rgb else on_train - on_test
        print(f"{spec}: training {unit(on_train)}, test {unit(on_test)}, gap {gap:.3f}"
              f"{' bits/dim' if rgb else ' nats'}"
              + (f", valid {unit(mean_elbo(model, valid))}" if a.valid else ""), flush=True)


if __name__ == "__main__":
    main()
