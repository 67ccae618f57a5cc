#!/usr/bin/env bash
# Reproduce the main tables of benchmarks/results/ on a CPU machine (the commands of the committed results;
# compile_probe.txt, before_after_repeat15.*, attractors/, pretrained_eval/ and gpu/ come from the commands
# their README sections and file headers give).
# Usage: bash benchmarks/run_all.sh [python]    (default: .venv/bin/python if present, else python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
R=benchmarks/results
mkdir -p "$R"
# 1. smoke run: default threads, batch 8, with the (slow here) bf16 rows forced
$PY benchmarks/benchmark.py --quick --bf16 --force-bf16 --json "$R/quick.json" --txt "$R/quick.txt"
# 2. the MNIST CPU presets at their batch sizes, on one and two threads (see README: the machine is shared)
$PY benchmarks/benchmark.py --presets mnist_doubling_cpu,mnist_nondoubling_cpu,mnist_baseline_cpu \
    --threads 1,2 --checkpointing --bf16 --iwae-sweep --json "$R/cpu_presets.json" --txt "$R/cpu_presets.txt"
# 2a. bf16 autocast against float32 where the CPU has bf16 units but no AMX (run on an Intel Xeon with
#     AVX-512 BF16; elsewhere the bf16 rows fall back or need --force-bf16)
$PY benchmarks/benchmark.py --presets mnist_doubling_cpu --threads 1 --bf16 --no-reference \
    --json "$R/bf16_avx512_no_amx.json" --txt "$R/bf16_avx512_no_amx.txt"
# 2a'. the same on a CPU with AMX (an Intel Xeon with AMX: there bf16 is the fast path)
$PY benchmarks/benchmark.py --presets mnist_doubling_cpu --threads 1 --bf16 --no-reference \
    --json "$R/bf16_amx.json" --txt "$R/bf16_amx.txt"
# 2b. checkpointing rows of the NCA presets again (memory measured in its own pass, without the FLOP counter)
$PY benchmarks/benchmark.py --presets mnist_doubling_cpu,mnist_nondoubling_cpu --threads 1 --checkpointing \
    --no-reference --repeats 3 --json "$R/cpu_presets_ckpt.json" --txt "$R/cpu_presets_ckpt.txt"
# 3. the paper's MNIST model: one instrumented and one timed update, package and NCHW reference
$PY benchmarks/benchmark.py --presets mnist_doubling --threads 1 --paper-reference \
    --json "$R/paper_mnist_doubling.json" \
    --txt "$R/paper_mnist_doubling.txt"
# 3b. the same with activation checkpointing: its peak memory (target: at most 2 GB)
$PY benchmarks/benchmark.py --presets mnist_doubling --threads 1 --checkpointing --no-reference \
    --warmup 0 --repeats 1 --iwae-images 1 --json "$R/paper_mnist_doubling_ckpt.json" \
    --txt "$R/paper_mnist_doubling_ckpt.txt"
# 4. scaling with the image size (and the chart for the book)
$PY benchmarks/scaling.py --threads 1 --checkpointing --json "$R/scaling.json" --png "$R/scaling.png"
# 5. candidate NCA-step changes, before/after
$PY benchmarks/before_after.py --threads 1 --repeats 7 --json "$R/before_after.json" --txt "$R/before_after.txt"
# 6. the shipped models' card figures, re-measured (long: hours; see the README's table; not yet run to the
#    end, so results/ holds no pretrained_figures.json)
$PY benchmarks/pretrained_figures.py --json "$R/pretrained_figures.json"
