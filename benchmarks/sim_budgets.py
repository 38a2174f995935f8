"""Wall time of the simulation budgets, CPU and GPU side by side in one run.

`tiny` is for tests (seconds), `small` is the default of `collapse-audit run` (target: <= 60 s on
2 CPU cores), `full` is the whole design over five families with 32 paired seeds (target: <= 60 s
on one H100/H200). Each budget runs once per device, uncached, after an untimed warm-up of the tiny
budget on that device (first-call allocations, CUDA context). `full` on the CPU is skipped unless
asked for (`--cpu-full`): it takes far longer than a benchmark should.

    python benchmarks/sim_budgets.py [--budgets tiny,small,full] [--cpu-full]
"""

from __future__ import annotations

import argparse
import time

import torch

from simulations.sweep import SweepConfig, run_sweep


def timed(budget: str, device: str) -> tuple[float, int, int]:
    cfg = SweepConfig.budget(budget, device=device)  # type: ignore[arg-type]
    start = time.perf_counter()
    run_sweep(cfg)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, len(cfg.cells()), len(cfg.cells()) * cfg.seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="tiny,small,full")
    parser.add_argument("--cpu-full", action="store_true", help="also time the full budget on the CPU")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        timed("tiny", device)  # warm-up, untimed
    gpu = torch.cuda.get_device_name(0) if "cuda" in devices else "no GPU present"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {gpu}")
    print(f"{'budget':<7} {'cells':>6} {'runs':>7} " + " ".join(f"{d + ' s':>9}" for d in devices)
          + (f" {'cpu/cuda':>9}" if len(devices) > 1 else ""))
    for budget in args.budgets.split(","):
        seconds = {}
        for device in devices:
            if budget == "full" and device == "cpu" and not args.cpu_full:
                continue
            seconds[device], cells, runs = timed(budget, device)
        if not seconds:
            print(f"{budget:<7} skipped: full needs a GPU (or --cpu-full)")
            continue
        row = " ".join(f"{seconds[d]:>9.1f}" if d in seconds else f"{'-':>9}" for d in devices)
        ratio = f" {seconds['cpu'] / seconds['cuda']:>8.1f}x" if {"cpu", "cuda"} <= set(seconds) else ""
        print(f"{budget:<7} {cells:>6} {runs:>7} {row}{ratio}")


if __name__ == "__main__":
    main()
