"""Figures of a sweep (matplotlib, Agg backend): the phase diagram, curves per regime, thresholds."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from simulations.sweep import CellResult, SweepResult  # noqa: E402


def _primary_cells(result: SweepResult) -> list[CellResult]:
    primary = result.analysis.get("primary")
    if not primary:
        return []
    return [c for c in result.cells if all(getattr(c, k) == v for k, v in primary.items())]


def _phase_diagram(result: SweepResult, path: Path) -> Path | None:
    cells = [c for c in _primary_cells(result) if "tail_mass_kept" in c.metrics]
    if not cells:
        return None
    ratios = sorted({c.ratio for c in cells})
    diversities = sorted({c.diversity for c in cells})
    grid = np.full((len(diversities), len(ratios)), np.nan)
    for i, d in enumerate(diversities):
        for j, r in enumerate(ratios):
            values = [c.metrics["tail_mass_kept"][-1] for c in cells if c.ratio == r and c.diversity == d]
            grid[i, j] = np.mean(values)  # averaged over the real amounts
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=max(1.0, np.nanmax(grid)))
    ax.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
    ax.set_yticks(range(len(diversities)), [f"{d:g}" for d in diversities])
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
    first = cells[0]
    ax.set_xlabel("synthetic ratio rho")
    ax.set_ylabel(f"synthetic diversity ({first.diversity_control})")
    ax.set_title(f"Tail mass kept at generation {len(first.metrics['tail_mass_kept']) - 1}\n{first.family}, {first.regime}")
    fig.colorbar(image, ax=ax, label="tail mass kept")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _curves(result: SweepResult, path: Path) -> Path | None:
    cells = [c for c in result.cells if "tail_mass_kept" in c.metrics]
    if not cells:
        return None
    hold = result.analysis.get("primary", {}).get("hold", cells[0].hold)
    cells = [c for c in cells if c.hold == hold or c.regime == "replace"]
    regimes = list(dict.fromkeys(c.regime for c in cells))
    diversities = sorted({c.diversity for c in cells})
    middle = diversities[len(diversities) // 2]
    amount = min(c.real_amount if hold == "real" else c.samples for c in cells)
    size = (lambda c: c.real_amount) if hold == "real" else (lambda c: c.samples)  # noqa: E731
    fig, axes = plt.subplots(1, len(regimes), figsize=(4 * len(regimes), 3.6), sharey=True, squeeze=False)
    for ax, regime in zip(axes[0], regimes):
        shown = [c for c in cells if c.regime == regime and c.diversity == middle and size(c) == amount]
        for c in sorted(shown, key=lambda c: c.ratio):
            mean, se = np.array(c.metrics["tail_mass_kept"], float), np.array(c.metrics["tail_mass_kept_se"], float)
            g = np.arange(len(mean))
            ax.plot(g, mean, marker="o", ms=3, label=f"rho={c.ratio:g}")
            ax.fill_between(g, mean - 2 * se, mean + 2 * se, alpha=0.2)
        ax.set_title(regime)
        ax.set_xlabel("generation (0 = truth)")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("tail mass kept")
    what = "real samples per generation" if hold == "real" else "samples per generation"
    fig.suptitle(f"diversity {middle:g}, {amount} {what}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _threshold_curve(result: SweepResult, path: Path) -> Path | None:
    thresholds = result.analysis.get("thresholds")
    if not thresholds:
        return None
    rows = thresholds["per_ratio"]
    key = "real_amount" if "real_amount" in rows[0] else "samples"
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for amount in sorted({r[key] for r in rows}):
        points = [(r["ratio"], r["min_diversity"]) for r in rows if r[key] == amount]
        xs = [x for x, y in points]
        ys = [np.nan if y is None else y for x, y in points]
        ax.plot(xs, ys, marker="o", label=f"{amount} {'real' if key == 'real_amount' else 'per generation'}")
    tested = sorted(result.config.diversity)
    for value, name in ((tested[0], "least tested"), (tested[-1], "most tested")):
        ax.axhline(value, color="grey", linestyle=":", linewidth=1)
        ax.annotate(name, (ax.get_xlim()[0], value), fontsize=7, color="grey", va="bottom")
    ax.set_ylim(tested[0] - 0.05 * (tested[-1] - tested[0] or 1), tested[-1] + 0.05 * (tested[-1] - tested[0] or 1))
    ax.set_xlabel("synthetic ratio rho")
    ax.set_ylabel(f"least diversity ({thresholds['diversity_control']})")
    ax.set_title(f"Least diversity keeping tail loss <= {thresholds['tolerance']:g}\n(gaps: no tested value suffices)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_figures(result: SweepResult, out_dir: Path) -> list[Path]:
    """Write the figures this result supports into out_dir; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        _phase_diagram(result, out_dir / "phase_diagram.png"),
        _curves(result, out_dir / "curves_by_regime.png"),
        _threshold_curve(result, out_dir / "threshold_curve.png"),
    ]
    return [p for p in written if p is not None]
