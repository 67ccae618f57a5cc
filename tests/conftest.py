"""Shared test setup.

Tests use tiny tensors, for which one thread is faster than two on a shared 2-core machine (thread
start-up and contention dominate); this applies to the whole pytest process.
"""
import torch

torch.set_num_threads(1)
