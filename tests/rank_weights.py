"""`vnca` with a test hook, for tests/test_distributed.py: run under torchrun, every rank writes its final
weights to $VNCA_SAVE_RANK_WEIGHTS/rank<r>.safetensors, so that the test can check that the ranks ended
in step. (The hook lives here, not in the package.)

    python -m torch.distributed.run --nproc_per_node 2 tests/rank_weights.py train --preset ...
"""
import os
import sys
from pathlib import Path

from safetensors.torch import save_file

import vnca_tutorial.train as training
from vnca_tutorial.cli import main

_train = training._train


def _train_and_save_weights(config, images, settings, val_images, rank, world, device):
    model, history = _train(config, images, settings, val_images, rank, world, device)
    folder = Path(os.environ["VNCA_SAVE_RANK_WEIGHTS"])
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(folder / f"rank{rank}.safetensors"))
    return model, history


if __name__ == "__main__":
    training._train = _train_and_save_weights
    sys.exit(main())
