"""Figures of a sweep (matplotlib, Agg backend), read from the headline fixed-real-count slice.

    write_figures(result, out_dir)  # -> [phase_diagram.png, curves.png, diversity.png], those it can draw

- phase_diagram.png  per family (rows) and real count R (panels): relative tail mass (analysis.effects)
                     over synthetic share x sampler bias, the collapse contour at 1 - tolerance and the
                     interpolated boundaries (analysis.boundaries) with their bootstrap bands.
- curves.png         tail_mass_ratio over generations at the smallest R for a few shares, at the most
                     sharpening and the unbiased sampler, beside the real-only (same_real) model, +-2 SE.
- diversity.png      realised diversity of the synthetic batches (tail coverage, entropy) against the
                     requested sampler setting, per share and R, averaged over the stationary window.

A figure the result cannot support (no analysis, one sampler setting, no such metric) is not written.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

from simulations.analysis import HEADLINE_REGIMES, HELD_FIXED, CellEffect  # noqa: E402
from simulations.diversity import MORE_IS_DIVERSE, UNBIASED  # noqa: E402
from simulations.sweep import CellResult, SweepResult  # noqa: E402

RESPONSE_LABEL = "tail mass relative to real-only (paired)"
SHARES_SHOWN = 4  # curves and diversity: this many shares, spread over the tested ones


# -----------------------------------------------------------------------------
# what to draw: the headline slice, its shares and sampler settings


def headline_regime(result: SweepResult) -> str | None:
    """The pre-registered headline regime; without an analysis, the first of them the grid has."""
    if result.analysis is not None and result.analysis.headline:
        return next(iter(result.analysis.headline))
    present = {c.regime for c in result.cells if c.hold == "real" and c.ratio > 0}
    return next((r for r in HEADLINE_REGIMES if r in present), None)


def _window(result: SweepResult) -> tuple[int, int]:
    """Generations averaged: the analysis's stationary window, else the same rule (the last quarter)."""
    if result.analysis is not None:
        return result.analysis.window
    g = result.config.generations
    return max(1, g - max(1, g // 4) + 1), g


def _slice(result: SweepResult, family: str, regime: str) -> list[CellResult]:
    """Cells of the fixed-real-count design with synthetic data (the real-only cells are the reference)."""
    return [c for c in result.cells if c.family == family and c.regime == regime and c.hold == "real" and c.ratio > 0]


def _sharpest(control: str, values: list[float]) -> float:
    return min(values) if MORE_IS_DIVERSE.get(control, True) else max(values)


def _neutral(control: str, values: list[float]) -> tuple[float, str]:
    """The unbiased setting and its name; controls without one (matched) show their most diverse setting."""
    unbiased = UNBIASED.get(control)
    if unbiased in values:
        return unbiased, "unbiased"
    return (max(values) if MORE_IS_DIVERSE.get(control, True) else min(values)), "most diverse"


def _spread(values: list[float], n: int) -> list[float]:
    """Up to n of the sorted values, evenly spaced by rank (the smallest and largest always kept)."""
    values = sorted(values)
    return [values[i] for i in sorted({round(i) for i in np.linspace(0, len(values) - 1, min(n, len(values)))})]


def _series(cell: CellResult, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A metric's per-generation mean and SE (None -> NaN), or None when the cell does not have it."""
    if name not in cell.metrics:
        return None
    as_array = lambda v: np.array([np.nan if x is None else x for x in v], float)  # noqa: E731
    se = cell.metrics.get(f"{name}_se", [None] * len(cell.metrics[name]))
    return as_array(cell.metrics[name]), as_array(se)


def _spans_decades(values: list[float]) -> bool:
    """For a log axis: top_k / dedup settings reach 1e9 (their unbiased value); tail_resample starts at 0."""
    return min(values) > 0 and max(values) / min(values) > 20


def _share_colours(shares: list[float]) -> dict[float, tuple]:
    """One colour per share, the same in every figure: light for little synthetic data, dark for much."""
    cmap = plt.get_cmap("viridis_r")
    return {s: cmap(0.15 + 0.8 * i / max(1, len(shares) - 1)) for i, s in enumerate(sorted(shares))}


# -----------------------------------------------------------------------------
# phase diagram


def phase_grid(effects: list[CellEffect], family: str, regime: str, real_amount: int):
    """(shares, biases, grid) of the fixed-real-count slice: grid[i, j] is relative_tail_mass.mean at
    biases[i], shares[j] (NaN where the grid has no such cell or no seed gave a finite value)."""
    rows = [e for e in effects if e.family == family and e.regime == regime and e.hold == "real"
            and e.real_amount == real_amount]
    shares = sorted({e.ratio for e in rows})
    biases = sorted({e.diversity for e in rows})
    grid = np.full((len(biases), len(shares)), np.nan)
    for e in rows:
        if e.relative_tail_mass is not None:
            grid[biases.index(e.diversity), shares.index(e.ratio)] = e.relative_tail_mass.mean
    return shares, biases, grid


# Axis spaces: (to, back). Shares live on a logit axis; settings spanning orders of magnitude on a log one.
SPACES = {
    "logit": (lambda x: np.log(x / (1 - x)), lambda y: 1 / (1 + np.exp(-y))),
    "log": (np.log, np.exp),
    "linear": (lambda x: x, lambda y: y),
}


def _edges(centres: list[float], space: str) -> np.ndarray:
    """Cell edges for pcolormesh: midpoints between centres in the axis's own space, padded at the ends."""
    to, back = SPACES[space]
    c = to(np.asarray(centres, float))
    pad = np.diff(c).mean() / 2 if len(c) > 1 else 0.5
    return back(np.concatenate([[c[0] - pad], (c[1:] + c[:-1]) / 2, [c[-1] + pad]]))


def _title(fig, text: str) -> None:
    """A suptitle wrapped to the figure's width (a one-panel figure is narrow)."""
    width = int(16 * fig.get_figwidth())  # characters per line at 9 pt
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in text.split("\n")), fontsize=9)


def _draw_boundaries(ax, boundaries, xlim: tuple[float, float]) -> None:
    """Crossings with bootstrap bands; a band end that is None lies beyond the tested shares, so it runs
    to the panel's edge. Settings that never crossed (or crossed below the grid) get an edge arrow."""
    for b in boundaries:
        if b.status == "crossed":
            lo = b.band[0] if b.band[0] is not None else xlim[0]
            hi = b.band[1] if b.band[1] is not None else xlim[1]
            ax.errorbar([b.ratio], [b.diversity], xerr=[[b.ratio - min(lo, b.ratio)], [max(hi, b.ratio) - b.ratio]],
                        fmt="o", color="black", mfc="white", ms=5, capsize=3, lw=1.2, zorder=5)
        elif b.status == "not_reached":
            ax.plot([xlim[1]], [b.diversity], marker=">", color="black", ms=6, clip_on=False, zorder=5)
        else:  # below_grid
            ax.plot([xlim[0]], [b.diversity], marker="<", color="black", ms=6, clip_on=False, zorder=5)


def _phase_diagram(result: SweepResult, path: Path) -> Path | None:
    analysis, regime = result.analysis, headline_regime(result)
    if analysis is None or regime is None:
        return None
    panels = []  # (family, R, shares, biases, grid, boundaries)
    for family in result.config.families:
        for real in sorted({e.real_amount for e in analysis.effects if e.family == family and e.regime == regime
                            and e.hold == "real"}):
            shares, biases, grid = phase_grid(analysis.effects, family, regime, real)
            if len(biases) < 2 or not np.isfinite(grid).any():
                continue  # one sampler setting: there is no bias axis to draw
            bounds = [b for b in analysis.boundaries if b.family == family and b.regime == regime and b.hold == "real"
                      and b.size == real]
            panels.append((family, real, shares, biases, grid, bounds))
    if not panels:
        return None
    threshold = 1 - analysis.tolerance
    # One colour scale for all panels, diverging at 1 (the real-only model): red = tail mass lost.
    top = max(1.2, math.ceil(2 * float(np.nanmax([np.nanmax(p[4]) for p in panels]))) / 2)
    norm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=top)
    levels = np.unique(np.concatenate([np.linspace(0, 1, 11), np.linspace(1, top, 5), [threshold]]))
    families = list(dict.fromkeys(p[0] for p in panels))
    columns = max(sum(p[0] == f for p in panels) for f in families)
    fig, axes = plt.subplots(len(families), columns, figsize=(4.6 * columns + 1.2, 3.9 * len(families) + 0.6),
                             squeeze=False, sharey="row", layout="constrained")
    mappable = None
    for row, family in enumerate(families):
        mine = [p for p in panels if p[0] == family]
        for ax in axes[row, len(mine):]:
            ax.set_visible(False)
        for ax, (_, real, shares, biases, grid, bounds) in zip(axes[row], mine):
            control = next(e.diversity_control for e in analysis.effects if e.family == family)
            log_bias = _spans_decades(biases)
            if len(shares) >= 2 and not log_bias:
                # Contours in share coordinates: on every bias row the 1 - tolerance line then passes through
                # the analysis's crossing, which interpolates linearly in share between the same cells.
                mappable = ax.contourf(shares, biases, grid, levels=levels, cmap="RdBu", norm=norm, extend="max")
                ax.contour(shares, biases, grid, levels=[threshold], colors="black", linewidths=1.5)
            else:  # one tested share, or settings (k = 20 ... 1e9) no contour interpolates sensibly: the cells
                mappable = ax.pcolormesh(_edges(shares, "logit"), _edges(biases, "log" if log_bias else "linear"),
                                         grid, cmap="RdBu", norm=norm)
            ax.set_facecolor("0.88")  # untested shares (below the lowest, above the highest) stay grey
            tested_x, tested_y = np.meshgrid(shares, biases)
            ax.plot(tested_x.ravel(), tested_y.ravel(), ".", color="grey", ms=3)
            # A logit share axis is a log S/R axis (logit(rho) = log S/R): 0.05 ... 0.99 spread evenly.
            ends = [shares[0], shares[-1]] + [x for b in bounds for x in (b.ratio, *b.band) if x is not None]
            xlim = (min(ends) / 1.6, 1 - (1 - max(ends)) / 1.6)
            ax.set_xscale("logit")
            ax.set_xlim(*xlim)
            _draw_boundaries(ax, bounds, xlim)
            ax.set_xticks(shares, [f"{s:g}" for s in shares], fontsize=7)
            ax.minorticks_off()
            # S/R on top at round values: the share axis and the synthetic-per-real axis are the same.
            top_axis = ax.twiny()
            top_axis.set_xscale("logit")
            top_axis.set_xlim(*xlim)
            per_real = [q for q in (0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300) if xlim[0] < q / (1 + q) < xlim[1]]
            top_axis.set_xticks([q / (1 + q) for q in per_real], [f"{q:g}" for q in per_real], fontsize=7)
            top_axis.minorticks_off()
            top_axis.set_xlabel("synthetic per real sample S/R", fontsize=8)
            # Half a step of margin, so markers on the lowest and highest setting are not cut in half.
            if log_bias:
                ax.set_yscale("log")
                ax.set_ylim(min(biases) / 1.5, max(biases) * 1.5)
            else:
                step = np.diff(biases).min() / 2
                ax.set_ylim(min(biases) - step, max(biases) + step)
            unbiased = UNBIASED.get(control)
            if unbiased in biases:
                ax.axhline(unbiased, color="grey", lw=0.8, ls=":")
            ax.set_title(f"{family}, R = {real} real samples per generation", fontsize=9)
            ax.set_xlabel("synthetic share rho (logit axis)", fontsize=8)
            if ax is axes[row, 0]:
                ax.set_ylabel(f"sampler bias ({control}; {'lower' if MORE_IS_DIVERSE.get(control, True) else 'higher'}"
                              " = sharper)", fontsize=8)
    ticks = sorted({*np.linspace(0, 1, 6).round(2), threshold, *np.linspace(1, top, 3)})
    fig.colorbar(mappable, ax=axes, label=RESPONSE_LABEL, fraction=0.04, pad=0.02, ticks=ticks, format="%.3g")
    held = f"{regime}: {analysis.headline.get(regime, HELD_FIXED.get(regime, ''))}; real count R held fixed per panel"
    caption = (f"black line: collapse at {threshold:g}; circles: crossing share per bias with bootstrap 95% band; "
               "> never crossed, < below the lowest share; grey: not tested")
    if any(b.status == "crossed" and b.ratio < b.tested[0] for p in panels for b in p[5]):
        # The analysis anchors share 0 at 1 (a real-only cell is its own counterfactual) and interpolates from there.
        caption += " (a crossing in grey is interpolated from share 0, where the ratio is 1 by definition)"
    _title(fig, f"{', '.join(families)}: relative tail mass over generations {analysis.window[0]}-{analysis.window[1]}"
                f" ({held})\n{caption}")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -----------------------------------------------------------------------------
# tail mass over generations


def _curves(result: SweepResult, path: Path) -> Path | None:
    regime = headline_regime(result)
    if regime is None:
        return None
    window = _window(result)
    rows = []  # (family, R, [(setting, name)], cells, reference)
    for family in result.config.families:
        cells = [c for c in _slice(result, family, regime) if "tail_mass_ratio" in c.metrics]
        if not cells:
            continue
        real = min(c.real_amount for c in cells)
        cells = [c for c in cells if c.real_amount == real]
        control, values = cells[0].diversity_control, sorted({c.diversity for c in cells})
        settings = [(_sharpest(control, values), "most sharpening" if control in UNBIASED else "least diverse")]
        neutral = _neutral(control, values)
        settings = [neutral] if neutral[0] == settings[0][0] else settings + [neutral]
        # The same_real counterfactual: the real-only cell of the same regime at the same real count.
        reference = next((c for c in result.cells if c.family == family and c.regime == regime and c.ratio == 0
                          and c.real_amount == real and c.hold == "real" and "tail_mass_ratio" in c.metrics), None)
        rows.append((family, real, settings, cells, reference))
    if not rows:
        return None
    columns = max(len(r[2]) for r in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(4.8 * columns + 1.8, 3.6 * len(rows) + 0.4), squeeze=False,
                             sharey="row", layout="constrained")
    for row, (family, real, settings, cells, reference) in enumerate(rows):
        for ax in axes[row, len(settings):]:
            ax.set_visible(False)
        shown = _spread(list({c.ratio for c in cells}), SHARES_SHOWN)
        colours = _share_colours(shown)
        for ax, (value, name) in zip(axes[row], settings):
            if reference is not None:
                mean, se = _series(reference, "tail_mass_ratio")
                g = np.arange(len(mean))
                ax.plot(g, mean, "k--", lw=1.3, label="real only (same R)")
                ax.fill_between(g, mean - 2 * se, mean + 2 * se, color="black", alpha=0.1)
            for share in shown:
                cell = next((c for c in cells if c.ratio == share and c.diversity == value), None)
                if cell is None:
                    continue
                mean, se = _series(cell, "tail_mass_ratio")
                g = np.arange(len(mean))
                ax.plot(g, mean, color=colours[share], marker="o", ms=2.5, lw=1.2,
                        label=f"share {share:g} (S/R {share / (1 - share):.2g})")
                ax.fill_between(g, mean - 2 * se, mean + 2 * se, color=colours[share], alpha=0.2)
            ax.axhline(1.0, color="grey", lw=0.8, ls=":")  # the truth's tail weight
            ax.axvspan(window[0] - 0.5, window[1] + 0.5, color="grey", alpha=0.08, lw=0)
            ax.set_title(f"{family}, R = {real}: {cells[0].diversity_control} {value:g} ({name})", fontsize=9)
            ax.set_xlabel("generation (0 = truth; shaded: stationary window)", fontsize=8)
        axes[row, 0].set_ylabel("tail mass ratio q(tail) / p(tail)", fontsize=8)
        # Outside the panels: the curves of a sharpening sampler fill the whole height.
        axes[row, len(settings) - 1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    _title(fig, f"Tail mass over generations at the smallest real count R: {regime} ({HELD_FIXED.get(regime, '')}); "
                "bands +-2 SE over seeds")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -----------------------------------------------------------------------------
# realised against requested diversity


def window_average(cell: CellResult, name: str, window: tuple[int, int]) -> tuple[float, float]:
    """A metric's mean over the window's generations and its SE. Generations of one seed are correlated
    and only per-generation SEs are stored, so the SE is their mean: an upper bound (sd of a sum <= the
    sum of the sds), never an understatement."""
    series = _series(cell, name)
    if series is None:
        return math.nan, math.nan
    mean, se = (a[window[0] : window[1] + 1] for a in series)
    if not np.isfinite(mean).any():
        return math.nan, math.nan
    return float(np.nanmean(mean)), float(np.nanmean(se))


def _diversity(result: SweepResult, path: Path) -> Path | None:
    regime = headline_regime(result)
    if regime is None:
        return None
    window = _window(result)
    rows = []  # (family, cells, [metric names])
    for family in result.config.families:
        cells = _slice(result, family, regime)
        names = [n for n in ("batch_tail_coverage", "batch_entropy") if any(n in c.metrics for c in cells)]
        if "batch_entropy" not in names and any("sampler_entropy" in c.metrics for c in cells):
            names.append("sampler_entropy")
        if names and len({c.diversity for c in cells}) >= 2:  # one setting: no requested axis to speak of
            rows.append((family, cells, names))
    if not rows:
        return None
    labels = {"batch_tail_coverage": "realised tail coverage of the synthetic batch",
              "batch_entropy": "realised entropy of the synthetic batch (nats)",
              "sampler_entropy": "entropy of the sampling distribution (nats)"}
    columns = max(len(r[2]) for r in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(5 * columns + 1.8, 3.8 * len(rows) + 0.4), squeeze=False,
                             layout="constrained")
    for row, (family, cells, names) in enumerate(rows):
        for ax in axes[row, len(names):]:
            ax.set_visible(False)
        control = cells[0].diversity_control
        # Entry 0 describes the truth: its entropy is the reference a sampler's entropy is read against.
        truth = next((v[0] for c in cells if (v := c.metrics.get("sampler_entropy")) and v[0] is not None), math.nan)
        shown = _spread(list({c.ratio for c in cells}), SHARES_SHOWN)
        colours = _share_colours(shown)
        reals = sorted({c.real_amount for c in cells})
        styles = dict(zip(reals, ["-", "--", ":", "-."] * len(reals)))
        markers = dict(zip(reals, "osD^v" * len(reals)))
        for ax, name in zip(axes[row], names):
            for share in shown:
                for real in reals:
                    line = sorted((c for c in cells if c.ratio == share and c.real_amount == real),
                                  key=lambda c: c.diversity)
                    points = [(c.diversity, *window_average(c, name, window)) for c in line]
                    points = [p for p in points if np.isfinite(p[1])]
                    if not points:
                        continue
                    x, y, se = map(np.array, zip(*points))
                    ax.errorbar(x, y, yerr=se, color=colours[share], ls=styles[real], marker=markers[real], ms=3.5,
                                capsize=2, lw=1.1, label=f"share {share:g}, R = {real}")
            values = sorted({c.diversity for c in cells})
            if _spans_decades(values):
                ax.set_xscale("log")
            unbiased = UNBIASED.get(control)
            if unbiased in values:
                ax.axvline(unbiased, color="grey", lw=0.8, ls=":")
            if name != "batch_tail_coverage" and math.isfinite(truth):
                ax.axhline(truth, color="black", lw=0.8, ls=":", label="entropy of the truth")
            ax.set_xlabel(f"requested setting ({control})", fontsize=8)
            ax.set_ylabel(labels[name], fontsize=8)
            ax.set_title(family, fontsize=9)
        axes[row, len(names) - 1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    _title(fig, f"Requested vs realised diversity: {regime}, real count R held fixed, mean over generations "
                f"{window[0]}-{window[1]} (error bars: SE, upper bound)")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_figures(result: SweepResult, out_dir: Path) -> list[Path]:
    """Write the figures this result supports into out_dir; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        _phase_diagram(result, out_dir / "phase_diagram.png"),
        _curves(result, out_dir / "curves.png"),
        _diversity(result, out_dir / "diversity.png"),
    ]
    return [p for p in written if p is not None]
