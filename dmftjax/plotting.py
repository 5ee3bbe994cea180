"""Figures: DMFT curves with a Monte Carlo band, simulation points with error bars."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ._trajectory import Trajectory

STYLE = {"dmft": dict(color="C0", lw=1.8), "simulation": dict(color="C3", fmt="o", ms=3.5, capsize=2)}


def plot_curve(ax, traj: Trajectory, name: str = "error", label: str | None = None,
               every: int | None = None, color=None, **kw):
    """Draw one observable of one trajectory: a line with a 2-standard-error band for the
    DMFT, points with 2-standard-error bars for a simulation (every `every`-th step)."""
    t = np.asarray(traj.times)
    v = np.asarray(traj.values[name])
    se = np.nan_to_num(np.asarray(traj.stderr[name]))
    label = label or traj.source
    if traj.source == "simulation":
        every = every or max(1, len(t) // 25)
        style = dict(STYLE["simulation"], **kw)
        if color is not None:
            style["color"] = color
        ax.errorbar(t[::every], v[::every], yerr=2 * se[::every], label=label, ls="none", **style)
    else:
        style = dict(STYLE["dmft"], **kw)
        if color is not None:
            style["color"] = color
        ax.plot(t, v, label=label, **style)
        ax.fill_between(t, v - 2 * se, v + 2 * se, color=style["color"], alpha=0.25, lw=0)
    return ax


def compare(dmft: Trajectory, sim: Trajectory | None = None,
            names=("error", "cosine", "train_loss", "wrong_well"), title: str | None = None,
            logy=("error", "train_loss")):
    """One panel per observable, DMFT against simulation."""
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        plot_curve(ax, dmft, name, label="DMFT (d = inf)")
        if sim is not None:
            plot_curve(ax, sim, name, label=f"simulation (d = {sim.info.get('dim')})")
        if name in logy:
            ax.set_yscale("log")
        ax.set_xlabel("step t")
        ax.set_title(name.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


_LABELS = {"alpha": r"sample ratio $\alpha = n/d$", "lam": r"ridge $\lambda$",
           "step_size": r"step size $\eta$", "prep": "preprocessing parameter"}


def _axis_label(result, name):
    if name == "prep":
        field = (getattr(result, "settings", None) or {}).get("prep_field")
        prep = ((getattr(result, "settings", None) or {}).get("preprocessing") or {})
        if field:
            return f"{prep.get('type', 'preprocessing')} {field}"
    return _LABELS.get(name, name)


def _select(result, x: str, y: str | None, where: dict | None):
    """Indices that fix every axis other than `x` (and `y`): `where[name]` (a value, the
    nearest grid value is used) or the first grid value."""
    where = dict(where or {})
    index = []
    for name, vals in result.axes.items():
        if name in (x, y):
            index.append(slice(None))
        else:
            target = where.get(name, vals[0])
            index.append(int(np.argmin(np.abs(np.asarray(vals) - target))))
    return tuple(index)


def _threshold_for(result, y: str | None, index):
    thr = getattr(result, "threshold", None)
    if thr is None:
        return None
    thr = np.asarray(thr, dtype=float)
    if thr.ndim == 0 or "prep" not in result.axes:
        return float(thr)
    if y == "prep":
        return thr  # a boundary alpha_c(prep)
    pos = list(result.axes).index("prep")
    i = index[pos] if isinstance(index[pos], int) else 0
    return float(thr[i])


def plot_phase_diagram(result, name: str = "error", x: str = "alpha", y: str | None = "lam",
                       *, where: dict | None = None, log: bool | None = None, ax=None,
                       cmap: str = "viridis", threshold: bool = True, title: str | None = None):
    r"""A phase diagram of a sweep: `name` (e.g. the final error) over the `x` and `y`
    axes as a colour map (or over `x` alone as curves when `y` is `None` or not swept),
    with the weak-recovery threshold `alpha_c` of the sweep's preprocessing drawn when
    it is known and `x` is `alpha` (a vertical line, or the boundary `alpha_c(prep)`
    when `y` is the preprocessing parameter).

    **Arguments:**

    - `result`: a `SweepResult` (anything with `axes`, `values` and `threshold`).
    - `name`: a stored quantity (`result.values`).
    - `x`, `y`: swept axes (`"alpha"`, `"lam"`, `"step_size"`, `"prep"`).
    - `where`: values of the other swept axes (default: their first value).
    - `log`: colour (or y) scale logarithmic; default for positive data with a spread
      over two decades.
    - `ax`: a matplotlib axis (default: a new figure).

    **Returns:** the matplotlib `Figure`.
    """
    from matplotlib.colors import LogNorm

    if name not in result.values:
        raise ValueError(f"{name!r} is not in the sweep; it has {sorted(result.values)}")
    if x not in result.axes:
        raise ValueError(f"x = {x!r} is not a swept axis; swept: {list(result.axes)}")
    if y is not None and (y not in result.axes or len(result.axes[y]) < 2 or y == x):
        y = None
    index = _select(result, x, y, where)
    data = np.asarray(result.values[name], dtype=float)[index]
    names = [n for n in result.axes if n in (x, y)]
    if y is not None and names[0] != x:
        data = data.T  # now [x, y]
    xs = np.asarray(result.axes[x], dtype=float)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 4.2))
    else:
        fig = ax.figure
    finite = data[np.isfinite(data)]
    if log is None:
        log = finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() > 100
    if y is None:
        ax.plot(xs, data, "o-", color="C0", ms=4)
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(name.replace("_", " "))
    else:
        ys = np.asarray(result.axes[y], dtype=float)
        norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if log and finite.size else None
        mesh = ax.pcolormesh(xs, ys, np.ma.masked_invalid(data.T), shading="nearest", cmap=cmap,
                             norm=norm)
        fig.colorbar(mesh, ax=ax, label=name.replace("_", " "))
        ax.set_ylabel(_axis_label(result, y))
    if threshold and x == "alpha":
        thr = _threshold_for(result, y, index)
        if thr is not None and np.ndim(thr) == 0 and np.isfinite(thr):
            ax.axvline(thr, color="w" if y is not None else "k", ls="--", lw=1.5,
                       label=rf"weak recovery $\alpha_c = {thr:.3g}$")
            ax.legend(fontsize=8, loc="best")
        elif thr is not None and np.ndim(thr) == 1:
            ys = np.asarray(result.axes[y], dtype=float)
            ok = np.isfinite(thr)
            ax.plot(thr[ok], ys[ok], "w--", lw=1.5, label=r"weak recovery $\alpha_c$")
            ax.set_xlim(xs.min() - 0.5 * np.ptp(xs) / max(len(xs) - 1, 1),
                        xs.max() + 0.5 * np.ptp(xs) / max(len(xs) - 1, 1))
            ax.legend(fontsize=8, loc="best")
    ax.set_xlabel(_axis_label(result, x))
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_sweep_curves(result, name: str = "error", along: str = "alpha", *,
                      where: dict | None = None, ax=None, logy: bool = True):
    """The DMFT curves of a sweep against time, one line per value of `along` (the other
    axes fixed by `where`, default their first value). Needs a `dmft` sweep."""
    if name not in result.curves:
        raise ValueError(f"no curves for {name!r} (only dmft sweeps store curves)")
    index = _select(result, along, None, where)
    curves = np.asarray(result.curves[name], dtype=float)[index]
    ses = np.nan_to_num(np.asarray(result.curves[name + "_se"], dtype=float)[index])
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 4.2))
    else:
        fig = ax.figure
    vals = np.asarray(result.axes[along], dtype=float)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(vals)))
    t = np.arange(curves.shape[-1])
    for v, c, s, col in zip(vals, curves, ses, colors):
        ax.plot(t, c, color=col, lw=1.5, label=f"{along} = {v:.3g}")
        ax.fill_between(t, c - 2 * s, c + 2 * s, color=col, alpha=0.2, lw=0)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel(name.replace("_", " "))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_law(dmft: Trajectory, sim: Trajectory | None, t: int, what: str = "r", *,
             kind: str | None = None, bins: int = 50, ax=None, label: str | None = None):
    r"""The law of one quantity at step `t`, DMFT against simulation: the DMFT's density
    as a line (its row law from the Monte Carlo samples, or the exact coordinate law),
    the simulator's as a histogram with per-bin 2-standard-error bars across seeds, and
    the p-value of `compare_laws` in the legend.

    **Arguments:** `dmft`, `sim` (kept with `laws_at` containing `t`; `sim` may be
    `None`), `t`, `what` (`"r"`, `"y"`, `"z"` for a row, `"theta"` or `"theta_star"` for a
    coordinate), `kind` (`"row"` or `"coordinate"`, inferred from `what` by default),
    `bins`, `ax`.

    **Returns:** the matplotlib `Figure`.
    """
    from ._laws import compare_laws

    kind = kind or ("coordinate" if what.startswith("theta") else "row")
    law = dmft.law(kind, t)
    if ax is None:
        fig, ax = plt.subplots(figsize=(3.4, 2.6))
    else:
        fig = ax.figure
    other = sim.law(kind, t) if sim is not None else None
    pool = (other if other is not None else law)
    lo, hi = np.asarray(pool.quantile(what, [0.001, 0.999]), dtype=float).ravel()
    edges = np.linspace(lo, hi, bins + 1)
    centres, width = 0.5 * (edges[1:] + edges[:-1]), edges[1] - edges[0]
    full = np.concatenate([[-np.inf], edges, [np.inf]])
    p = law.probabilities(what, full)[:, 1:-1] / width
    ax.plot(centres, p.mean(axis=0), color="C0", lw=1.6, label=label or "DMFT")
    if other is not None:
        q = other.probabilities(what, full)[:, 1:-1] / width
        se = q.std(axis=0, ddof=1) / np.sqrt(q.shape[0]) if q.shape[0] > 1 else 0 * q[0]
        test = compare_laws(law, other, what)
        ax.errorbar(centres, q.mean(axis=0), yerr=2 * se, fmt="o", ms=2.2, color="C3",
                    elinewidth=0.8, label=f"simulation, d = {sim.info.get('dim')} "
                                          f"(p = {test.p_value:.2g})")
    symbols = {"r": r"$r^t = \langle a, \theta^t \rangle$", "y": "$y$", "z": "$z$",
               "theta": r"$\theta^t_j$", "theta_star": r"$\theta^*_j$"}
    ax.set_xlabel(symbols.get(what, what) + f"  (t = {t})")
    ax.set_ylabel("density")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
