"""Helpers shared by several test modules (import them as ``from helpers import ...``: pytest puts tests/
on the path, since tests/ is not a package)."""
from __future__ import annotations

import contextlib
import http.server
import importlib.util
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


REPO = Path(__file__).resolve().parent.parent


def load_script(relative_path: str):
    """Import a script of the repository (scripts/, benchmarks/, tools/ are not packages) as a module."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def randomise(module: nn.Module, seed: int = 0, std: float = 0.1) -> nn.Module:
    """Give every parameter (including the zero-initialised last layer of u) random N(0, std^2) values,
    so that every NCA step changes the state."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def write_tiny_mnist(folder: Path, seed: int = 0) -> Path:
    """binarized_mnist.npz as in PROVENANCE.md: packed bits (N, 98) uint8 per split (24 / 8 / 16 digits)
    and the test split's sorted labels."""
    rng = np.random.default_rng(seed)

    def split(n):
        return np.packbits((rng.random((n, 784)) < 0.15).astype(np.uint8), axis=1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "binarized_mnist.npz"
    np.savez(path, train=split(24), valid=split(8), test=split(16),
             test_labels=np.sort(rng.integers(0, 10, 16)).astype(np.uint8))
    return path


@contextlib.contextmanager
def http_server(files: dict[str, bytes], trickle_s: float = 0.0):
    """A local HTTP server for download tests: yields its base URL; GET /<path> returns files[path], else
    404; with ``trickle_s``, 16 bytes at a time with that pause between them (a slow server)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):                                   # noqa: N802 (the http.server name)
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = 16 if trickle_s else max(len(body), 1)
            for i in range(0, len(body), step):
                try:
                    self.wfile.write(body[i:i + step])
                    self.wfile.flush()
                except OSError:                             # the client gave up
                    return
                time.sleep(trickle_s)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
