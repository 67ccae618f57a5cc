"""vnca_tutorial.viz.plot_scaling draws what benchmarks/scaling.py recorded (the figure of chapter 10)."""
import json
from pathlib import Path

import matplotlib

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
