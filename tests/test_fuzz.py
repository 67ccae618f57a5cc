"""Property-based tests (hypothesis): the maths holds and bad input gives a clear error for any input,
not only for the values the other tests chose.

Each property is checked on a few hundred generated cases; hypothesis shrinks a failure to the simplest
input that shows it.
"""
import argparse
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vnca_tutorial.bounds import log_mean_exp
from vnca_tutorial.checks import check_images
from vnca_tutorial.cli import CLIError, _config, positive_float, positive_int, seed_value
from vnca_tutorial.config import NonDoublingConfig
from vnca_tutorial.likelihoods import BernoulliImage, discretized_logistic_log_probs

FUZZ = settings(max_examples=200, deadline=None)
finite = st.floats(-1e6, 1e6, allow_nan=False)


@FUZZ
@given(mean=st.floats(-3, 3), log_scale=st.floats(-12, 6))
def test_a_discretized_logistic_sums_to_one_over_its_256_values(mean, log_scale):
    log_p = discretized_logistic_log_probs(torch.tensor(mean, dtype=torch.float64),
                                           torch.tensor(log_scale, dtype=torch.float64))   # (256,)
    assert torch.isfinite(log_p).all() and (log_p <= 1e-12).all()
    # exact up to PixelCNN++'s fallback, which replaces bins of mass below 1e-5 by pdf x width (measured
    # worst case on a 301 x 361 grid of these ranges: 1.4e-5)
    assert abs(torch.logsumexp(log_p, 0).item()) < 5e-5


@FUZZ
@given(logits=st.lists(st.floats(-60, 60), min_size=4, max_size=4))
def test_a_bernoulli_image_sums_to_one_over_all_images(logits):
    dist = BernoulliImage(torch.tensor(logits, dtype=torch.float64).view(1, 1, 2, 2))
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)
    log_p = dist.log_prob(images.view(16, 1, 1, 2, 2)).flatten()          # (16,): every 2x2 image
    assert abs(torch.logsumexp(log_p, 0).item()) < 1e-7


@FUZZ
@given(x=st.lists(finite, min_size=1, max_size=50), shift=finite)
def test_log_mean_exp_lies_between_the_mean_and_the_max_and_shifts(x, shift):
    t = torch.tensor(x, dtype=torch.float64)
    value = log_mean_exp(t).item()
    assert t.mean().item() - 1e-6 * (1 + abs(t.mean().item())) <= value <= t.max().item() + 1e-9
    assert log_mean_exp(t + shift).item() == pytest.approx(value + shift, rel=1e-9, abs=1e-6)
    assert log_mean_exp(torch.full((len(x),), x[0], dtype=torch.float64)).item() == pytest.approx(x[0])


@FUZZ
@given(text=st.text(max_size=12) | st.integers(-10 ** 30, 10 ** 30).map(str)
       | st.floats(allow_nan=True, allow_infinity=True).map(repr))
def test_flag_values_are_a_number_or_a_clear_argparse_error(text):
    for parse, ok in ((positive_int, lambda v: isinstance(v, int) and v >= 1),
                      (positive_float, lambda v: math.isfinite(v) and v > 0),
                      (seed_value, lambda v: isinstance(v, int) and 0 <= v < 2 ** 63)):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError as e:
            assert repr(text) in str(e)                                 # the message names the input
        else:
            assert ok(value), (parse.__name__, text, value)


FIELDS = [f for f in NonDoublingConfig.__dataclass_fields__ if f not in ("name", "dataset")]


@FUZZ
@given(field=st.sampled_from(FIELDS), text=st.text(max_size=10) | st.integers(-10 ** 12, 10 ** 12).map(str)
       | st.floats().map(repr) | st.sampled_from(["true", "false", "0", "1", "-1", "nan", "inf", "1e-9"]))
def test_set_overrides_give_a_config_or_one_clear_error(field, text):
    try:
        config = _config("mnist_nondoubling_cpu", [f"{field}={text}"])
    except CLIError as e:
        assert field in str(e)                                          # the message names the field
    else:
        assert isinstance(config, NonDoublingConfig)


@FUZZ
@given(shape=st.lists(st.integers(0, 5), min_size=0, max_size=5),
       fill=st.sampled_from([0.0, 1.0, 0.5, 255.0, -1.0, float("nan"), float("inf")]))
def test_image_checks_accept_or_raise_value_error(shape, fill):
    x = torch.full(shape, fill)
    for channels, likelihood in ((1, "bernoulli"), (3, "dlogistic")):
        try:
            check_images(x, channels, 4, likelihood)
        except ValueError as e:
            assert str(e)
        else:
            assert tuple(x.shape[1:]) == (channels, 4, 4) and len(x) >= 1
