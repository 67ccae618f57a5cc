"""Which precision `--precision auto` picks, on CPUs described by their /proc/cpuinfo flags."""
import pytest
import torch

from vnca_tutorial import hardware
from vnca_tutorial.hardware import choose_bf16


def _cpu(monkeypatch, flags: set[str], name: str = "Test CPU") -> None:
    monkeypatch.setattr(hardware, "cpu_flags_and_name", lambda: (flags, name))


@pytest.mark.parametrize("flags, bf16", [({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, True),
                                         ({"avx2", "avx512f", "avx512_bf16"}, False),   # no AMX: slower
                                         ({"avx2"}, False), (set(), False)])
def test_auto_takes_bf16_only_on_cpus_with_amx(monkeypatch, flags, bf16):
    _cpu(monkeypatch, flags)
    chosen, why = choose_bf16("auto", "cpu")
    assert chosen is bf16
    assert why.startswith("bf16" if bf16 else "float32") and "Test CPU" in why


def test_an_explicit_precision_is_taken_as_asked(monkeypatch):
    _cpu(monkeypatch, {"amx_bf16"})
    assert choose_bf16("float32", "cpu")[0] is False
    _cpu(monkeypatch, {"avx2"})
    assert choose_bf16("bf16", "cpu")[0] is True


def test_auto_on_a_gpu_follows_its_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_bf16("auto", "cuda") == (True, "bf16 autocast: the GPU has bf16 units")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_bf16("auto", "cuda")[0] is False
    assert choose_bf16("auto", "mps")[0] is False


def test_an_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="auto, float32, bf16"):
        choose_bf16("float16")


def test_cpu_description_names_the_bf16_units(monkeypatch):
    _cpu(monkeypatch, {"avx512f", "avx512_bf16", "amx_bf16"}, "Xeon")
    assert hardware.cpu_description() == "Xeon (AVX-512 BF16, AMX)"
    _cpu(monkeypatch, {"avx2"}, "EPYC")
    assert hardware.cpu_description() == "EPYC (AVX2, no bf16 units)"
