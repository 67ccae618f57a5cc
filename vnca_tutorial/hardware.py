"""Which processor a figure was measured on: the CPU's name and its bf16 units (AVX-512 BF16, AMX).

Speed and even the fastest precision depend on it (bf16 is several times faster than float32 with AMX
and far slower without bf16 hardware), so every reported figure names it. Explained in chapter 10
(book/10_scaling.md).
"""
from __future__ import annotations

import platform


def cpu_flags_and_name() -> tuple[set[str], str]:
    """The CPU's feature flags and model name from /proc/cpuinfo (empty set and platform name elsewhere)."""
    flags: set[str] = set()
    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("model name") and not name:
                    name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return flags, name or platform.processor() or platform.machine()


def cpu_description() -> str:
    """E.g. 'Intel(R) Xeon(R) Processor (AVX-512 BF16, no AMX)' or 'AMD EPYC 7B13 (AVX2, no bf16 units)'."""
    flags, name = cpu_flags_and_name()
    units = [label for flag, label in (("avx512_bf16", "AVX-512 BF16"), ("amx_bf16", "AMX")) if flag in flags]
    if not flags:
        return name
    if not units:
        simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
        return f"{name} ({simd}, no bf16 units)"
    return f"{name} ({', '.join(units)}{'' if 'amx_bf16' in flags else ', no AMX'})"


PRECISIONS = ("auto", "float32", "bf16")


def choose_bf16(precision: str = "auto", device: str = "cpu") -> tuple[bool, str]:
    """Whether to train the update network under bf16 autocast, and why (chapter 10).

    "auto" takes bf16 only where it is the fast path: a CUDA GPU with bf16 support, or a CPU with AMX
    units (bf16 matrix products 3x as fast as float32 on an Intel Xeon with AMX, a training update 1.5x as
    fast: benchmarks/results/bf16_amx.txt). Without AMX, bf16 runs in
    emulation or on narrow AVX-512 BF16 units and is slower than float32 (about 50x on AVX2-only CPUs).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision == "bf16", f"{precision} as asked"
    if str(device).startswith("cuda"):
        import torch
        fast = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return fast, "bf16 autocast: the GPU has bf16 units" if fast else "float32: this GPU lacks bf16"
    if str(device) != "cpu":
        return False, f"float32: no bf16 rule for device {device!r}"
    flags, _ = cpu_flags_and_name()
    if "amx_bf16" in flags:
        return True, f"bf16 autocast: {cpu_description()} has AMX units"
    return False, f"float32: {cpu_description()} has no AMX units, where bf16 is slower than float32"
