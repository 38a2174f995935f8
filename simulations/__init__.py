"""The simulation lab: recursive training on known truths, to separate the effect of the synthetic
ratio from the diversity of the synthetic data and from the absolute amount of real data.

Read in this order:

- cells.py        `Cell`: one grid point (family, regime, ratio rho, diversity control + value,
                  real_amount, samples per generation).
- regimes.py      how each regime (replace, fresh, accumulate, accumulate_subsample, fixed_real)
                  builds a generation's training set, as per-run sample counts (`DataPlan`).
- diversity.py    controls on the synthetic portion (temperature, top-p, top-k, dedup,
                  tail-preserving resampling, matched entropy) as batched transforms.
- metrics.py      tail mass kept, entropy, KL, TV, Gini-Simpson, distinct-n, Vendi, k-NN
                  precision/recall/coverage, test loss.
- families/       one model family per file; each `simulate(cells, generations, seeds, device,
                  seed, **params)` runs all cells x seeds as one batched tensor program and returns,
                  per cell, metric -> [seeds, generations + 1] (entry 0: the truth).
                  categorical (Zipf unigram), markov (order-k chain), gaussian (d-D, MLE or
                  unbiased), gaussian_mixture (imbalanced 1-D mixture, EM), linear_regression
                  (OLS), neural_lm and vae_digits (neural; optional).
- theory.py       closed-form predictions (validation targets V1-V9) the tests compare against.
- sweep.py        `SweepConfig` (with `budget("tiny"|"small"|"full")`), `run_sweep` -> `SweepResult`
                  (JSON: {"config", "cells", "analysis"}), cached by config hash.
- analysis.py     variance shares of final tail loss by factor with bootstrap CIs, diversity
                  thresholds per ratio, effects of ratio and diversity, the plain-language verdict.
- plots.py        `write_figures(result, out_dir)`: phase diagram, curves per regime, threshold curve.
- device.py       `resolve_device("auto"|"cpu"|"cuda")`.

The package stands alone: it imports nothing from agent/ or tools/.
"""
