"""vnca_tutorial.viz.plot_scaling draws what benchmarks/scaling.py recorded (the figure of chapter 10)."""
import json
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")

from vnca_tutorial.viz import plot_scaling  # noqa: E402

RECORDED = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "scaling.json"


def test_recorded_scaling_benchmark_covers_16_to_128_pixels():
    result = json.loads(RECORDED.read_text())
    assert result["sizes"] == [16, 32, 64, 128]
    assert {"doubling", "nondoubling", "doubling+ckpt", "nondoubling+ckpt"} <= set(result["series"])
    for points in result["series"].values():
        assert [p["image_size"] for p in points] == result["sizes"]
        assert all(p["cpu_s"] > 0 and p["peak_tensor_mib"] > 0 and p["gflop"] > 0 for p in points)


def test_plot_scaling_draws_every_series_on_each_panel():
    result = json.loads(RECORDED.read_text())
    fig = plot_scaling(result)
    assert len(fig.axes) == 3
    for ax, key in zip(fig.axes, ("cpu_s", "peak_tensor_mib", "gflop")):
        assert len(ax.lines) == len(result["series"])
        for line, points in zip(ax.lines, result["series"].values()):
            assert list(line.get_xdata()) == result["sizes"]
            assert list(line.get_ydata()) == [p[key] for p in points]


def test_show_grid_draws_the_image_grid_and_labels_columns_and_rows():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from vnca_tutorial.viz import image_grid, show_grid
    images = torch.rand(6, 1, 8, 8)
    fig, ax = plt.subplots()
    show_grid(ax, images, ncol=3, column_labels=["a", "b", "c"], row_labels=["top", "bottom"])
    assert (ax.images[0].get_array() == image_grid(images, nrow=3)).all()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["top", "bottom"]
    assert list(ax.get_xticks()) == [2 + 8 / 2, 2 + 10 + 4, 2 + 20 + 4]   # the centre of each column
    fig, ax = plt.subplots()
    show_grid(ax, images, ncol=3)
    assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
    plt.close("all")


def test_plot_learning_curves_draws_the_cards_that_record_one():
    from vnca_tutorial.viz import plot_learning_curves
    cards = {"a": {"training_curve": [[1000, 0.5, -150.0], [2000, 1.0, -140.0]], "paper": {"nats": -90.0}},
             "b": {"training_curve": None}, "c": {}}
    fig = plot_learning_curves(cards)
    by_updates, by_hours = fig.axes
    lines = [line for line in by_updates.lines if line.get_label() == "a"]
    assert len(lines) == 1 and list(lines[0].get_xdata()) == [1000, 2000]
    assert list(lines[0].get_ydata()) == [-150.0, -140.0]
    assert [list(line.get_xdata()) for line in by_hours.lines if line.get_label() == "a"] == [[0.5, 1.0]]
    assert any(line.get_label().startswith("paper") and line.get_ydata()[0] == -90.0 for line in by_updates.lines)
    assert {line.get_label() for line in by_updates.lines} == {"a", "paper (-90.0 nats)"}   # b, c: no curve
