"""evaluate_bound: a resumable evaluation gives exactly the uninterrupted result; foreign files are refused."""
import pytest
import torch

from vnca_tutorial.config import get_preset
from vnca_tutorial.evaluate import evaluate_bound
from vnca_tutorial.model import build_model


def _model():
    torch.manual_seed(0)
    config = get_preset("mnist_doubling_cpu", image_size=8, n_doublings=2, steps_per_stage=2, z_dim=4,
                        hidden=8, encoder_channels=2)
    return build_model(config).eval()


def _images(n=7):
    return (torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()


class Interrupted(Exception):
    pass


def test_an_interrupted_evaluation_resumes_to_the_same_result(tmp_path, monkeypatch):
    model, x, file = _model(), _images(), tmp_path / "eval.safetensors"
    whole = evaluate_bound(model, x, k=5, batch_size=2, seed=3)
    real_iwae, calls = model.iwae, []

    def failing_iwae(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Interrupted                       # stopped during the third of four batches
        return real_iwae(*args, **kwargs)
    monkeypatch.setattr(model, "iwae", failing_iwae)
    with pytest.raises(Interrupted):
        evaluate_bound(model, x, k=5, batch_size=2, seed=3, resume_file=file, save_every_s=0)
    assert file.exists()
    monkeypatch.setattr(model, "iwae", real_iwae)
    resumed_calls = []
    monkeypatch.setattr(model, "iwae", lambda *a, **k: resumed_calls.append(1) or real_iwae(*a, **k))
    resumed = evaluate_bound(model, x, k=5, batch_size=2, seed=3, resume_file=file, save_every_s=0)
    assert len(resumed_calls) == 2                  # only the two batches that were not done
    assert resumed.n_images == whole.n_images == 7
    assert resumed.nats == pytest.approx(whole.nats, abs=1e-5)
    assert resumed.stderr == pytest.approx(whole.stderr, abs=1e-5)
    again = evaluate_bound(model, x, k=5, batch_size=2, seed=3, resume_file=file)
    assert again.nats == resumed.nats               # a finished file is read back, nothing is recomputed


def test_a_resume_file_of_another_evaluation_is_refused(tmp_path):
    model, x, file = _model(), _images(), tmp_path / "eval.safetensors"
    evaluate_bound(model, x, k=5, batch_size=2, resume_file=file)
    with pytest.raises(ValueError, match=r"differs in: k"):
        evaluate_bound(model, x, k=6, batch_size=2, resume_file=file)
    with pytest.raises(ValueError, match=r"differs in: images"):
        evaluate_bound(model, _images(7) * 0, k=5, batch_size=2, resume_file=file)
    other = _model()
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(ValueError, match=r"differs in: model"):
        evaluate_bound(other, x, k=5, batch_size=2, resume_file=file)


def test_a_shard_gives_exactly_its_part_of_the_whole_evaluation():
    """Batch i draws from batch_generator(seed, i): shards started at their first batch reproduce the whole."""
    from vnca_tutorial.evaluate import evaluate_log_px
    model, x = _model(), _images(7)
    whole = evaluate_log_px(model, x, k=5, batch_size=2, seed=3)                        # (7,)
    parts = [evaluate_log_px(model, x[:4], k=5, batch_size=2, seed=3, first_batch=0),
             evaluate_log_px(model, x[4:], k=5, batch_size=2, seed=3, first_batch=2)]
    assert torch.equal(torch.cat(parts), whole)
    unaligned = evaluate_log_px(model, x[4:], k=5, batch_size=2, seed=3)               # batch 0's noise
    assert not torch.equal(unaligned, whole[4:])
    assert not torch.equal(evaluate_log_px(model, x, k=5, batch_size=2, seed=4), whole)


def test_batch_streams_differ_between_batches_and_seeds():
    from vnca_tutorial.evaluate import batch_generator
    draws = {(s, b): torch.randn(4, generator=batch_generator(s, b)) for s in (0, 1) for b in (0, 1)}
    assert len({tuple(v.tolist()) for v in draws.values()}) == 4
    assert torch.equal(torch.randn(4, generator=batch_generator(1, 0)), draws[1, 0])


def test_shards_of_a_stochastic_update_model_reproduce_the_whole_and_leave_the_global_rng_alone():
    """With p_update < 1 the update masks come from the global generator: evaluate_log_px seeds it per
    batch, so shards still give exactly the whole evaluation, and restores it afterwards."""
    from vnca_tutorial.evaluate import evaluate_log_px
    torch.manual_seed(0)
    model = build_model(get_preset("mnist_nondoubling_cpu", image_size=8, z_dim=4, hidden=8, encoder_channels=2,
                                   batch_size=4, min_steps=3, max_steps=4, p_update=0.5)).eval()
    with torch.no_grad():
        model.decoder.nca.update_net.out.weight.normal_(0, 0.3)    # masks must matter
    x = _images(6)
    torch.manual_seed(123)
    whole = evaluate_log_px(model, x, k=5, batch_size=2, seed=3)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)                        # the caller's stream is untouched
    torch.manual_seed(999)                                          # whatever the caller's state
    parts = [evaluate_log_px(model, x[:2], k=5, batch_size=2, seed=3),
             evaluate_log_px(model, x[2:], k=5, batch_size=2, seed=3, first_batch=1)]
    assert torch.equal(torch.cat(parts), whole)
    deterministic = model.decoder.nca.p_update
    model.decoder.nca.p_update = 1.0                                # the masks change the figure
    assert not torch.equal(evaluate_log_px(model, x, k=5, batch_size=2, seed=3), whole)
    model.decoder.nca.p_update = deterministic
