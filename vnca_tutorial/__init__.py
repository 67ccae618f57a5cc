"""vnca_tutorial: Variational Neural Cellular Automata (Palm, Gonzalez-Duque, Sudhakaran & Risi, ICLR 2022).

The package the book imports; each module is explained in a chapter of the book:

- `nca`: the update network u, one NCA step, the doubling operator (chapters 1-2)
- `decoders`: the doubling and non-doubling NCA decoders (chapters 2, 8)
- `likelihoods`: Bernoulli and discretized logistic mixture p(x|z) (chapter 3)
- `encoder`, `vae`, `model`: q(z|x), the ELBO, the VNCA (chapter 4)
- `bounds`: importance-weighted bound, nats and bits/dim (chapter 5)
- `damage`: damage operators on cell states (chapters 7-8)
- `config`: one config dataclass per variant and the named presets
- `data`, `train`, `pool`, `evaluate`, `checkpoint`, `cli`: data, training, evaluation and the `vnca`
  command (chapters 4, 5, 8, 10)
- `pretrained`: the models that ship with the package; `viz`, `widgets`: pictures and interactive
  explorers (chapter 11)
- `own_images`: a folder of your own image files as a VNCA's data, and a random train/test split
  (the appendix "Your own images")
"""
from .baseline import ConvVAE
from .bounds import ELBO, bits_per_dim, log_mean_exp
from .config import (PRESETS, BaselineConfig, DoublingConfig, NonDoublingConfig, get_preset)
from .damage import damage_random_square, damage_right_half
from .model import VNCA, build_model
from .nca import NCA, UpdateNetwork, double

__version__ = "0.1.0"

__all__ = [
    "VNCA", "ConvVAE", "build_model", "NCA", "UpdateNetwork", "double",
    "DoublingConfig", "NonDoublingConfig", "BaselineConfig", "PRESETS", "get_preset",
    "ELBO", "bits_per_dim", "log_mean_exp", "damage_right_half", "damage_random_square",
]
