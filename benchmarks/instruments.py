"""The measuring instruments of the benchmarks: FLOPs, tensor memory, resident memory, matmul rate, the CPU.

Used by benchmark.py, scaling.py, before_after.py and gpu_benchmark.py (and their tests); none of them is
a timing assertion: they print figures that the scripts compare side by side in one run.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import statistics
import threading
import time
import weakref
from typing import Callable

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from vnca_tutorial.hardware import cpu_description, cpu_flags_and_name

MiB = 2 ** 20


class TensorMemoryTracker(TorchDispatchMode):
    """Peak bytes of the tensor storages allocated while active (outputs of every ATen op, forward and
    backward). A storage counts from the op that creates it until it is freed; views and in-place results
    (whose storage is one of the op's inputs) are not new allocations. Tensors that existed before (weights,
    inputs, optimizer state) are not counted, so the peak is what the measured code itself allocates."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, Tensor):
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or key in inputs or key in self.live:
                continue
            self.live[key] = nbytes
            self.current += nbytes
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._free, key)
        return out


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil
        return psutil.Process().memory_info().rss


def malloc_trim() -> None:
    """Return freed heap memory to the OS (glibc), so that an RSS delta measures new memory."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RssSampler:
    """Peak RSS growth above the RSS at entry, sampled by a thread every ``interval`` seconds."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.base, self.peak = interval, 0, 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def delta(self) -> int:
        return self.peak - self.base


def instrumented(fn: Callable[[], object]) -> dict:
    """Run ``fn`` twice: once under the FLOP counter, then under the tensor-memory tracker and the RSS
    sampler. Two passes, because FlopCounterMode changes what activation checkpointing keeps alive (under
    it a checkpointed update of the paper's MNIST model peaked at 3.2x its real tensor memory)."""
    with FlopCounterMode(display=False) as flops:
        fn()
    malloc_trim()
    with RssSampler() as rss:
        with TensorMemoryTracker() as mem:
            fn()
    by_op = {str(k): v for k, v in flops.get_flop_counts().get("Global", {}).items()}
    return {"gflop": flops.get_total_flops() / 1e9, "gflop_by_op": {k: v / 1e9 for k, v in by_op.items()},
            "peak_tensor_mib": mem.peak / MiB, "rss_delta_mib": rss.delta / MiB}


def count_gflop(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as flops:
        fn()
    return flops.get_total_flops() / 1e9


@contextlib.contextmanager
def num_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------------------------------
# Hardware: the matrix-multiply rates
# ----------------------------------------------------------------------------------------------------
def matmul_rate(dtype: torch.dtype, threads: int, n: int, repeats: int = 3,
                device: str = "cpu", sync: Callable[[], None] = lambda: None) -> dict:
    """GFLOP/s of an n x n x n matrix multiply (2 n^3 FLOP): best and median of ``repeats``."""
    with num_threads(threads):
        g = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=g).to(device, dtype)
        b = torch.randn(n, n, generator=g).to(device, dtype)
        a @ b
        sync()
        wall, cpu = [], []
        for _ in range(repeats):
            c0, w0 = time.process_time(), time.perf_counter()
            a @ b
            sync()
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
    flop = 2 * n ** 3
    return {"n": n, "threads": threads, "gflops_best": flop / min(wall) / 1e9,
            "gflops_median": flop / statistics.median(wall) / 1e9,
            "gflops_per_cpu_s_best": flop / max(min(cpu), 1e-9) / 1e9}


def cpu_info() -> dict:
    flags, model = cpu_flags_and_name()
    simd = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    return {"model": model, "description": cpu_description(), "logical_cpus": os.cpu_count(),
            "simd_flags": simd, "has_avx512_bf16": "avx512_bf16" in flags, "has_amx_bf16": "amx_bf16" in flags,
            "torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_default_threads": torch.get_num_threads(), "python": platform.python_version()}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


