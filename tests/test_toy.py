import pytest
import torch

from vnca_tutorial.toy import shapes


def test_shapes_are_36_distinct_binary_images_of_four_kinds():
    x = shapes(12)
    assert x.shape == (36, 1, 12, 12)
    assert set(x.unique().tolist()) == {0.0, 1.0}
    flat = x.flatten(1)
    assert len({tuple(row.tolist()) for row in flat}) == 36, "every image differs"
    # image 4 * p + k is shape k at position p: moving a shape keeps its area (nothing is cut by the edge)
    areas = flat.sum(1).view(9, 4)
    assert (areas == areas[0]).all() and (areas > 0).all()
    # the middle position (p = 4) is centred on pixel (6, 6): each shape is symmetric about it
    centre = x[16:20, 0]
    assert torch.equal(centre[:, 1:, 1:], centre[:, 1:, 1:].flip(-1).flip(-2))


def test_shapes_refuse_a_size_they_cannot_fill():
    with pytest.raises(ValueError, match="size >= 8"):
        shapes(4)
