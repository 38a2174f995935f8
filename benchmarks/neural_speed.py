"""Batched vs one-at-a-time training of the neural simulation families.

For each family, N models are trained on the same data with the same randomness twice in one process:
once as one batched model (how simulate() trains), once as N separate models one after another. Same
total work; the printed ratio is what batching buys. Then one moderate simulate() call per family
(8 cells x 3 seeds x 5 generations) is timed end to end.

    python benchmarks/neural_speed.py --device auto --models 32
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from simulations.cells import Cell
from simulations.families import neural_lm, vae_digits


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], object]) -> float:
    synchronize(device)
    start = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - start


def lm_workload(models: int, steps: int, device: torch.device, g: torch.Generator) -> tuple[Callable, dict, tuple]:
    source = neural_lm.language(device)
    data = neural_lm.sample_sequences(source.transitions.expand(models, -1, -1).float(), 200, g)
    counts = torch.full((models,), 200, device=device)
    params = neural_lm.init_params(models, g, device)
    draws = torch.rand(steps, models, neural_lm.BATCH, generator=g, device=device)
    return neural_lm.fit, params, (data, counts, draws)


def vae_workload(models: int, steps: int, device: torch.device, g: torch.Generator) -> tuple[Callable, dict, tuple]:
    data = vae_digits.digits(device).draw("train", models, 300, g)
    counts = torch.full((models,), 300, device=device)
    params = vae_digits.init_params(models, g, device)
    draws = torch.rand(steps, models, vae_digits.BATCH, generator=g, device=device)
    eps = torch.randn(steps, models, vae_digits.BATCH, vae_digits.LATENT, generator=g, device=device)
    return vae_digits.fit, params, (data, counts, draws, eps)


def run_slice(args: tuple, r: int) -> tuple:
    """Run r's share of fit()'s data arguments: data, counts are [R, ...]; randomness is [steps, R, ...]."""
    data, counts, *randomness = args
    return (data[r : r + 1], counts[r : r + 1], *(x[:, r : r + 1] for x in randomness))


def compare(name: str, workload: Callable, models: int, steps: int, device: torch.device) -> None:
    g = torch.Generator(device=device).manual_seed(0)
    fit, params, args = workload(models, steps, device, g)
    fit(params, *args)  # warm-up: kernels, allocator, first-call costs
    batched = timed(device, lambda: fit(params, *args))
    alone = timed(device, lambda: [fit({k: v[r : r + 1] for k, v in params.items()}, *run_slice(args, r)) for r in range(models)])
    print(f"{name:<11} {models:>6} {steps:>6} {batched:>10.3f} {alone:>16.3f} {alone / batched:>8.1f}x", flush=True)


def moderate_cells(family: str) -> list[Cell]:
    return [
        Cell(family, regime, 1.0 if regime == "replace" else 0.5, control, value, 200)  # replace is all synthetic
        for regime in ("replace", "accumulate", "fresh", "fixed_real")
        for control, value in (("temperature", 0.8), ("top_p", 0.9))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--models", type=int, default=32, help="models trained, batched and one at a time")
    parser.add_argument("--steps", type=int, default=100, help="optimiser steps per model in the comparison")
    parser.add_argument("--no-simulate", action="store_true", help="skip the end-to-end simulate() timings")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device visible to torch")
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads available"
    print(f"device: {name}; torch {torch.__version__}; CPU runs use 1 intra-op thread, as simulate() does")

    print(f"{'family':<11} {'models':>6} {'steps':>6} {'batched_s':>10} {'one_at_a_time_s':>16} {'speedup':>9}")
    with neural_lm.one_cpu_thread(device):
        compare("neural_lm", lm_workload, args.models, args.steps, device)
        compare("vae_digits", vae_workload, args.models, args.steps, device)

    if not args.no_simulate:
        for family, module in (("neural_lm", neural_lm), ("vae_digits", vae_digits)):
            cells = moderate_cells(family)
            seconds = timed(device, lambda: module.simulate(cells, 5, 3, device, 0))
            print(f"simulate {family}: {len(cells)} cells x 3 seeds x 5 generations in {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
