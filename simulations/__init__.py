"""The simulation lab: recursive training on known truths. Its question: at a fixed amount of real
data, does the synthetic share drive collapse, or the bias of the sampler that makes the synthetic
data, and is "the ratio is what matters" true as a scale invariance f(cR, cS) = f(R, S)?

Read in this order:

- cells.py        `Cell`: one grid point (family, regime, synthetic share rho, sampler control +
                  value, real_amount, samples per generation).
- regimes.py      how each regime (replace, fresh, accumulate, accumulate_subsample, fixed_real)
                  builds a generation's training set, as per-run sample counts (`DataPlan`).
- sampling.py     the truths, exact samplers, and `RealStream`: real data as common random
                  numbers, so every cell is paired with its real-only counterfactuals.
- diversity.py    sampler controls relative to the current model (temperature, top-p, top-k, dedup,
                  tail-preserving resampling, matched entropy) and each one's unbiased setting.
- metrics.py      one meaning per name in every family: tail_mass_ratio, tail_coverage,
                  tail_types_lost, forward_kl, tail_forward_kl (reverse_kl only under its name),
                  and the realised diversity of each synthetic batch.
- families/       one model family per file; each `simulate(cells, generations, seeds, device,
                  seed, **params)` runs all cells x seeds as one batched tensor program and returns,
                  per cell, metric -> [seeds, generations + 1] (entry 0: the truth).
                  categorical (Zipf unigram), markov (order-k chain), gaussian (d-D, MLE or
                  unbiased), gaussian_mixture (imbalanced 1-D mixture, EM from the data),
                  linear_regression (OLS), neural_lm and vae_digits (neural; optional, sharing
                  neural.py).
- theory.py       closed-form predictions (validation targets V1-V12) the tests compare against.
- sweep.py        `SweepConfig` (the (R, share, bias) design, `budget("tiny"|"small"|"full")`),
                  `run_sweep` -> `SweepResult` (JSON: {"config", "cells", "analysis"}), cached.
- executors.py    where the grid batches (one family's cells each) run: `LocalExecutor` (in this
                  process, the default) or `RayExecutor` (one Ray task per batch, GPU-aware);
                  the same numbers and the same cache either way.
- analysis.py     typed results: paired effects with intervals, collapse boundaries with bootstrap
                  bands, the scale-invariance test, stationarity, and the one-sentence result.
- plots.py        `write_figures(result, out_dir)`: phase diagram, curves against real-only,
                  requested vs realised diversity.
- device.py       `resolve_device("auto"|"cpu"|"cuda")`.

The package stands alone: it imports nothing from agent/ or tools/.
"""
