"""vnca_tutorial.diagrams: the block diagrams of chapters 2 and 8 show the config's own sizes."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from vnca_tutorial import get_preset  # noqa: E402
from vnca_tutorial.diagrams import doubling_boxes, draw_row, nondoubling_boxes, update_boxes  # noqa: E402


def texts(boxes) -> str:
    return " | ".join(f"{b.label} {b.note} {b.loop} {b.back_label}" for b in boxes)


def test_doubling_diagram_has_the_papers_sizes():
    c = get_preset("mnist_doubling")   # |z| 256, 4 doublings of M = 8 steps, 32x32
    t = texts(doubling_boxes(c))
    assert "|z| = 256" in t and "2x2 cells" in t and "4 times: 2x2 -> 32x32" in t
    assert "40 steps in all" in t and "32x32 cells" in t and "bernoulli" in t
    small = texts(doubling_boxes(c.replace(n_doublings=3, steps_per_stage=5, image_size=16)))
    assert "3 times: 2x2 -> 16x16" in small and "20 steps in all" in small and "5 NCA steps" in small


def test_update_network_diagram_follows_n_blocks():
    c = get_preset("mnist_doubling")
    assert "4 residual\nblocks" in texts(update_boxes(c)) and "256 -> 256" in texts(update_boxes(c))
    nd = get_preset("mnist_nondoubling")
    assert "ELU" in texts(update_boxes(nd)) and "residual" not in texts(update_boxes(nd))


def test_nondoubling_diagram_shows_stochastic_updates_and_the_pool():
    c = get_preset("mnist_nondoubling")
    t = texts(nondoubling_boxes(c))
    assert "p = 0.5" in t and "T ~ U{32..64}" in t and "1024 states" in t and "50% of them damaged" in t
    assert "every cell" in texts(nondoubling_boxes(c.replace(p_update=1.0)))


def test_draw_row_draws_a_box_per_entry_and_an_arrow_between_neighbours():
    boxes = nondoubling_boxes(get_preset("mnist_nondoubling"))
    ax = draw_row(boxes).axes[0]
    assert sum(isinstance(p, FancyBboxPatch) for p in ax.patches) == len(boxes)
    loops = sum(bool(b.loop) for b in boxes) + sum(b.back_to >= 0 for b in boxes)
    assert sum(isinstance(p, FancyArrowPatch) for p in ax.patches) == len(boxes) - 1 + loops
    shown = [t.get_text() for t in ax.texts]
    assert all(b.label in shown for b in boxes)
