r"""Figures: DMFT curves with a Monte Carlo band, simulation points with error bars.

Every figure is drawn for a journal column: `width="one"` (3.4 in) or `"two"` (7.0 in),
8-9 pt text, constrained layout, and axes labelled in mathtext from one table
(`LABELS`, `label`) shared by every figure function and the command line.
"""

from __future__ import annotations

import contextlib
import functools
import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np

from ._trajectory import Trajectory

STYLE = {
    "dmft": dict(color="C0", lw=1.5),
    "simulation": dict(color="C3", fmt="o", ms=3.0, capsize=1.5, elinewidth=0.8),
}

# figure widths in inches: one journal column, two columns (a full page width)
WIDTHS = {"one": 3.4, "two": 7.0}

# text sizes and line widths for a figure printed at its own size
RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 9,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.5,
    "ytick.minor.width": 0.5,
    "xtick.major.size": 3,
    "ytick.major.size": 3,
    "legend.frameon": False,
    "legend.handlelength": 1.8,
    "mathtext.fontset": "dejavusans",
}

# ------------------------------------------------------------------------------------
# the label table: (short panel title, y-label for an odd link, y-label for an even link)
# `@` stands for the time index (t on a curve, T at the end of a sweep's run, infinity
# for a fixed point)

LABELS = {
    "overlap": ("overlap", r"$\langle\theta^*,\theta^{@}\rangle/d$", None),
    "norm": ("norm", r"$\|\theta^{@}\|^2/d$", None),
    "error": (
        "error",
        r"$\|\theta^{@} - \theta^*\|^2/d$",
        r"$\min_\pm \|\theta^{@} \mp \theta^*\|^2/d$",
    ),
    "cosine": (
        "cosine",
        r"$\cos\angle(\theta^{@},\theta^*)$",
        r"$|\cos\angle(\theta^{@},\theta^*)|$",
    ),
    # panel titles stay short: constrained layout does not make room for a title wider
    # than its panel (the y-label of the next panel would run into it)
    "train_loss": (
        "train loss",
        r"$\frac{1}{n}\sum_i \ell(y_i, \langle a_i,\theta^{@}\rangle)$",
        None,
    ),
    "test_error": ("test error", r"$\mathbb{E}\,\ell(y, \langle a,\theta^{@}\rangle)$", None),
    "wrong_well": ("wrong well", r"$\hat{P}(r^{@}_i \in$ wrong well$)$", None),
    # the spectral start, the fixed point, a sweep's bookkeeping
    "cosine2": ("spectral start", r"$\cos^2\angle(\theta^0_{\rm spec},\theta^*)$", None),
    "top_eigenvalue": ("top eigenvalue", r"top eigenvalue $\lambda_1$", None),
    "bulk_edge": ("bulk edge", r"bulk edge $\lambda_+$", None),
    "m": ("overlap", r"$m = \langle\theta^*,\theta^{@}\rangle/d$", None),
    "q": ("norm", r"$q = \|\theta^{@}\|^2/d$", None),
    "kappa": ("kappa", r"$\kappa$", None),
    "residual": ("residual", "residual of the fixed point", None),
    "num_diverged": ("diverged replicas", "diverged replicas", None),
    "diverged": ("diverged", "diverged (every replica)", None),
    "valid": ("valid", "valid fixed point", None),
}

# swept axes
AXIS_LABELS = {
    "alpha": r"sample ratio $\alpha = n/d$",
    "lam": r"ridge $\lambda$",
    "step_size": r"step size $\eta$",
    "prep": "preprocessing parameter",
    "momentum": r"momentum $\beta$",
}
_LABELS = AXIS_LABELS  # the old private name
_SYMBOLS = {"alpha": r"\alpha", "lam": r"\lambda", "step_size": r"\eta"}
_PREP_SYMBOLS = {"tau": r"$\tau$", "alpha": r"$\alpha$", "lower": r"lower clip"}


def label(name: str, even: bool = False, time: str = "t") -> str:
    r"""The axis label of a stored quantity: mathtext for an observable (e.g.
    `$\min_\pm \|\theta^t \mp \theta^*\|^2/d$` for the error of an even link), the name
    otherwise. `time` is the time index in it (`"t"`, `"T"`, `r"\infty"`, `"20"`); a
    standard error `name_se` is labelled `s.e. of` the quantity."""
    if name.endswith("_se") and name[:-3] in LABELS:
        return "s.e. of " + label(name[:-3], even, time)
    if name not in LABELS:
        return name.replace("_", " ")
    _, odd, ev = LABELS[name]
    text = ev if (even and ev is not None) else odd
    return text.replace("{@}", time if len(time) == 1 else "{" + time + "}")


def title_of(name: str) -> str:
    """The short panel title of a stored quantity."""
    if name.endswith("_se") and name[:-3] in LABELS:
        return "s.e. of " + LABELS[name[:-3]][0]
    return LABELS[name][0] if name in LABELS else name.replace("_", " ")


def time_label(times) -> str:
    """`step $t$` for integer times, `time $t$` otherwise."""
    t = np.asarray(times, dtype=float)
    if t.size and np.all(np.isfinite(t)) and np.allclose(t, np.round(t)):
        return "step $t$"
    return "time $t$"


def legend_label(source: str, dim=None) -> str:
    """What a curve is and what its band or bars are."""
    if source == "simulation":
        d = "" if dim is None else f", $d = {dim}$"
        return f"simulation{d} (bars: ±2 s.e.)"
    return r"DMFT, $d = \infty$ (band: ±2 s.e.)"


def _even_of(*trajs, even=None) -> bool:
    if even is not None:
        return bool(even)
    for tr in trajs:
        if tr is not None and "even" in (tr.info or {}):
            return bool(tr.info["even"])
    return False


# ------------------------------------------------------------------------------------
# style, figures, footer


@contextlib.contextmanager
def style():
    """The text sizes and line widths of every figure here, set for the `with` block.

    Only the keys of `RC` are set and restored, unlike `matplotlib.rc_context`, which
    restores every rcParam: Jupyter's inline backend switches interactive mode on when it
    loads, and loaded by a first figure drawn inside `rc_context` it would have that undone,
    so that no later pyplot figure of the notebook would show."""
    saved = {k: plt.rcParams[k] for k in RC}
    plt.rcParams.update(RC)
    try:
        yield
    finally:
        plt.rcParams.update(saved)


def _styled(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        with style():
            return f(*args, **kwargs)

    return wrapper


def _width_inches(width) -> float:
    if width not in WIDTHS:
        raise ValueError(f"width must be one of {sorted(WIDTHS)}, got {width!r}")
    return WIDTHS[width]


def new_figure(
    width: str = "two", height: float | None = None, nrows: int = 1, ncols: int = 1, **kw
):
    """A constrained-layout figure `width` ("one" or "two" columns) wide, with a grid
    of axes (`squeeze=False`)."""
    w = _width_inches(width)
    if height is None:
        height = 0.62 * w if width == "one" else 0.45 * w
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(w, height), squeeze=False, layout="constrained", **kw
    )
    return fig, axes


def wrap_title(text: str, width: str, fontsize: float = 9, fraction: float = 1.0) -> str:
    """`text` broken at its commas so that it fits `fraction` of the figure's width."""
    chars = int(fraction * _width_inches(width) * 72 / (0.6 * fontsize))
    parts = [p.strip() for p in str(text).split(", ")]
    lines, line = [], ""
    for part in parts:
        cand = part if not line else f"{line}, {part}"
        if line and _visible_len(cand) > chars:
            lines.append(line + ",")
            line = part
        else:
            line = cand
    lines.append(line)
    return "\n".join(lines)


def _visible_len(text: str) -> int:
    # mathtext commands are shorter on the page than in the source
    import re

    return len(re.sub(r"\\[a-zA-Z]+|[${}^_]", "x", text).replace("xx", "x"))


def add_footer(fig, text: str, fontsize: float = 6.0, color="0.35"):
    """A small footer under the figure (provenance): the figure grows by the footer's
    height and the layout keeps that strip free, so nothing overlaps it."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    lines = text.count("\n") + 1
    h = (lines * fontsize * 1.25 + 4) / 72
    w, height = fig.get_size_inches()
    fig.set_size_inches(w, height + h)
    frac = h / (height + h)
    engine = fig.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(rect=(0, frac, 1, 1 - frac))
    else:
        fig.tight_layout(rect=(0, frac, 1, 1))
    fig.text(
        0.01, 2 / 72 / (height + h), text, fontsize=fontsize, color=color, ha="left", va="bottom"
    )
    return fig


def footer_text(text: str, fig, fontsize: float = 6.0) -> str:
    """`text` wrapped to the figure's width at `fontsize`."""
    chars = max(40, int(fig.get_figwidth() * 72 / (0.57 * fontsize)))
    return textwrap.fill(text, chars)


# ------------------------------------------------------------------------------------
# curves


def _draw_curve(
    ax,
    traj: Trajectory,
    name: str = "error",
    label: str | None = None,
    every: int | None = None,
    color=None,
    **kw,
):
    """Draw one observable; returns the legend handle (a line and its band, or the
    error-bar container)."""
    t = np.asarray(traj.times)
    v = np.asarray(traj.values[name], dtype=float)
    se = np.nan_to_num(np.asarray(traj.stderr[name], dtype=float))
    label = label or traj.source
    if traj.source == "simulation":
        every = every or max(1, len(t) // 25)
        style_ = dict(STYLE["simulation"], **kw)
        if color is not None:
            style_["color"] = color
        return ax.errorbar(
            t[::every], v[::every], yerr=2 * se[::every], label=label, ls="none", **style_
        )
    style_ = dict(STYLE["dmft"], **kw)
    if color is not None:
        style_["color"] = color
    (line,) = ax.plot(t, v, label=label, **style_)
    band = ax.fill_between(
        t, v - 2 * se, v + 2 * se, color=style_["color"], alpha=0.25, lw=0, label="_nolegend_"
    )
    return (band, line)


def plot_curve(
    ax,
    traj: Trajectory,
    name: str = "error",
    label: str | None = None,
    every: int | None = None,
    color=None,
    **kw,
):
    """Draw one observable of one trajectory: a line with a 2-standard-error band for the
    DMFT, points with 2-standard-error bars for a simulation (every `every`-th step)."""
    _draw_curve(ax, traj, name, label, every, color, **kw)
    return ax


def _log_scale(arrays) -> bool:
    """Log scale when the data are positive and spread over more than a decade (below
    that, a log axis shows only minor-tick labels)."""
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays])
    vals = vals[np.isfinite(vals)]
    return vals.size > 0 and vals.min() > 0 and vals.max() / vals.min() > 10


def _log_floor(ax, arrays, factor: float = 3.0):
    """On a log axis, a band or bar whose lower end is at or below zero has no lower
    end to draw and would drag the axis down to its smallest positive point: the axis
    starts at most `factor` below the smallest curve value instead (the band or bar
    then runs off the bottom, where it reaches)."""
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size:
        lo, hi = ax.get_ylim()
        floor = vals.min() / factor
        if lo < floor:
            ax.set_ylim(floor, hi)


def _grid(rows_cols_for: int, width: str):
    n = rows_cols_for
    if width == "one":
        ncols = 1 if n == 1 else 2
    else:
        ncols = min(n, 4)
    return math.ceil(n / ncols), ncols


@_styled
def compare(
    dmft: Trajectory | None = None,
    sim: Trajectory | None = None,
    names=("error", "cosine", "train_loss", "wrong_well"),
    title: str | None = None,
    logy=("error", "train_loss"),
    *,
    width: str = "two",
    even: bool | None = None,
    limits: dict | None = None,
    every: int | None = None,
):
    r"""One panel per observable, DMFT against simulation (either may be `None`).

    **Arguments:**

    - `names`: the observables, one panel each.
    - `title`: a title over the panels (wrapped at its commas to the width).
    - `logy`: observables drawn on a log scale when positive and spread over more than
      a decade.
    - `width`: `"one"` (one column, 3.4 in: a 2 x 2 grid of four panels) or `"two"`
      (two columns, 7.0 in: up to four panels a row).
    - `even`: the link is even (phase retrieval): the error is minimised over the sign
      and the cosine is absolute, and the labels say so; default `info["even"]` of a
      trajectory when it records it, else `False`.
    - `limits`: `{name: value}` drawn as a dashed line per panel (a fixed point).
    - `every`: draw every `every`-th simulation point (default: about 12 points a
      panel in one column, 16 in two).

    **Returns:** the matplotlib `Figure` (its axes are the panels, its legend is above
    them and says what the band and the bars are).
    """
    if dmft is None and sim is None:
        raise ValueError("compare needs a DMFT trajectory, a simulation, or both")
    even = _even_of(dmft, sim, even=even)
    names = tuple(names)
    nrows, ncols = _grid(len(names), width)
    height = (0.3 + 1.45 * nrows) if width == "one" else (0.45 + 1.75 * nrows)
    if title:
        height += 0.16 * (1 + wrap_title(title, width).count("\n"))
    fig, axes = new_figure(width, height, nrows, ncols)
    flat = axes.ravel()
    for ax in flat[len(names) :]:
        fig.delaxes(ax)
    handles, labels = [], []
    first = dmft if dmft is not None else sim
    assert first is not None
    n_points = len(np.asarray(first.times))
    if every is None and sim is not None:
        every = max(1, round(len(np.asarray(sim.times)) / (12 if width == "one" else 16)))
    for i, (ax, name) in enumerate(zip(flat, names)):
        data = []
        if dmft is not None:
            h = _draw_curve(ax, dmft, name, label=legend_label("dmft"))
            data.append(dmft.values[name])
            if i == 0:
                handles.append(h)
                labels.append(legend_label("dmft"))
        if sim is not None:
            lab = legend_label("simulation", (sim.info or {}).get("dim"))
            h = _draw_curve(
                ax, sim, name, label=lab, every=every, ms=2.5 if width == "one" else 3.0
            )
            data.append(sim.values[name])
            if i == 0:
                handles.append(h)
                labels.append(lab)
        if limits is not None and limits.get(name) is not None and np.isfinite(float(limits[name])):
            h = ax.axhline(float(limits[name]), color="k", ls="--", lw=0.9)
            data.append([float(limits[name])])
            if not any(lab.startswith("fixed point") for lab in labels):
                handles.append(h)
                labels.append(r"fixed point ($t \to \infty$)")
        if name in logy and _log_scale(data):
            ax.set_yscale("log")
            _log_floor(ax, data)
        ax.set_xlabel(time_label(first.times))
        ax.set_ylabel(label(name, even))
        ax.set_title(title_of(name))
        ax.grid(alpha=0.3, lw=0.5)
        if n_points <= 12:
            ax.xaxis.get_major_locator().set_params(integer=True)
    ncol = len(handles) if width == "two" else 1
    # above the panels, outside the data, under the title (the legend's own title: a
    # suptitle and an outside legend would be placed on top of each other)
    figure_legend(fig, handles, labels, ncol, wrap_title(title, width) if title else None)
    return fig


def figure_legend(fig, handles, labels, ncols: int, title: str | None = None):
    """A legend above every panel (outside the data), with `title` over it."""
    leg = fig.legend(
        handles,
        labels,
        loc="outside upper center",
        ncols=ncols,
        title=title,
        title_fontsize=RC["figure.titlesize"],
        borderaxespad=0.2,
    )
    leg.get_title().set_multialignment("center")
    return leg


# ------------------------------------------------------------------------------------
# sweeps


def _axis_label(result, name):
    if name == "prep":
        settings = getattr(result, "settings", None) or {}
        field = settings.get("prep_field")
        prep = settings.get("preprocessing") or {}
        if field:
            return f"{prep.get('type', 'preprocessing')} {_PREP_SYMBOLS.get(field, field)}"
    return AXIS_LABELS.get(name, name)


def _result_even(result) -> bool:
    settings = getattr(result, "settings", None) or {}
    model = ((settings.get("problem") or {}).get("model") or {}).get("type")
    return model == "PhaseRetrieval"


def _result_time(result) -> str:
    """The time of a sweep's values: the number of steps of a DMFT sweep (T when not
    recorded), infinity for the fixed point."""
    settings = getattr(result, "settings", None) or {}
    if settings.get("engine") == "fixed_point":
        return r"\infty"
    steps = (settings.get("algorithm") or {}).get("steps")
    return str(steps) if steps is not None else "T"


def _grid_ticks(axis, values, log: bool = False):
    """Ticks at the grid values of a colour map's cells (for a short grid): its cells
    are centred on them, so the default ticks would name values (such as a negative
    ridge) that are not in the grid."""
    from matplotlib.ticker import FixedFormatter, FixedLocator

    values = np.asarray(values, dtype=float)
    if 1 < values.size <= 8:
        axis.set_major_locator(FixedLocator(values))
        axis.set_major_formatter(FixedFormatter([f"{v:.3g}" for v in values]))
        axis.set_minor_locator(FixedLocator([]))


def _select(result, x: str, y: str | None, where: dict | None):
    """Indices that fix every axis other than `x` (and `y`): `where[name]` (a value, the
    nearest grid value is used) or the first grid value."""
    where = dict(where or {})
    index: list[int | slice] = []
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


def clip_polyline(xs, ys, lo: float, hi: float):
    """The polyline through `(xs[i], ys[i])` restricted to `lo <= x <= hi`: a segment
    that leaves the range is cut where it crosses the limit (linear interpolation
    between its two computed ends), a non-finite vertex breaks the line (it is not
    bridged, and nothing is invented beyond the computed values). Returns `(x, y)`
    with NaN between the pieces."""
    xs = np.asarray(xs, dtype=float)
    ys = np.asarray(ys, dtype=float)
    ox: list[float] = []
    oy: list[float] = []

    def gap():
        if ox and not math.isnan(ox[-1]):
            ox.append(math.nan)
            oy.append(math.nan)

    def put(x, y):
        if not ox or math.isnan(ox[-1]) or (ox[-1], oy[-1]) != (x, y):
            ox.append(float(x))
            oy.append(float(y))

    if xs.size == 1 and np.isfinite(xs[0]) and lo <= xs[0] <= hi:
        return xs.copy(), ys.copy()
    for i in range(xs.size - 1):
        x0, y0, x1, y1 = xs[i], ys[i], xs[i + 1], ys[i + 1]
        if not (np.isfinite(x0) and np.isfinite(x1) and np.isfinite(y0) and np.isfinite(y1)):
            gap()
            continue
        if x0 == x1:
            a, b = (0.0, 1.0) if lo <= x0 <= hi else (1.0, 0.0)
        else:
            s_lo, s_hi = (lo - x0) / (x1 - x0), (hi - x0) / (x1 - x0)
            a, b = max(0.0, min(s_lo, s_hi)), min(1.0, max(s_lo, s_hi))
        if a > b:
            gap()
            continue
        if a > 0:
            gap()  # entered through a limit
        put(x0 + a * (x1 - x0), y0 + a * (y1 - y0))
        put(x0 + b * (x1 - x0), y0 + b * (y1 - y0))
        if b < 1:
            gap()  # left through a limit
    while ox and math.isnan(ox[-1]):
        ox.pop()
        oy.pop()
    return np.asarray(ox), np.asarray(oy)


@_styled
def plot_phase_diagram(
    result,
    name: str = "error",
    x: str = "alpha",
    y: str | None = "lam",
    *,
    where: dict | None = None,
    log: bool | None = None,
    ax=None,
    cmap: str = "viridis",
    threshold: bool = True,
    title: str | None = None,
    width: str = "two",
    even: bool | None = None,
):
    r"""A phase diagram of a sweep: `name` (e.g. the final error) over the `x` and `y`
    axes as a colour map (or over `x` alone as curves when `y` is `None` or not swept),
    with the weak-recovery threshold `alpha_c` of the sweep's preprocessing drawn when
    it is known and `x` is `alpha` (a vertical line, or the boundary `alpha_c(prep)`
    when `y` is the preprocessing parameter: through the computed thresholds only,
    marked, cut where it leaves the alpha range and broken where no threshold exists).

    **Arguments:**

    - `result`: a `SweepResult` (anything with `axes`, `values` and `threshold`).
    - `name`: a stored quantity (`result.values`).
    - `x`, `y`: swept axes (`"alpha"`, `"lam"`, `"step_size"`, `"prep"`).
    - `where`: values of the other swept axes (default: their first value).
    - `log`: colour (or y) scale logarithmic; default for positive data with a spread
      over two decades.
    - `ax`: a matplotlib axis (default: a new figure `width` columns wide).
    - `even`: label the error and cosine for an even link (default: from the sweep's
      settings).

    **Returns:** the matplotlib `Figure`.
    """
    from matplotlib.colors import LogNorm

    if name not in result.values:
        raise ValueError(f"{name!r} is not in the sweep; it has {sorted(result.values)}")
    if x not in result.axes:
        raise ValueError(f"x = {x!r} is not a swept axis; swept: {list(result.axes)}")
    if y is not None and (y not in result.axes or len(result.axes[y]) < 2 or y == x):
        y = None
    even = _result_even(result) if even is None else bool(even)
    qlabel = label(name, even, _result_time(result))
    index = _select(result, x, y, where)
    data = np.asarray(result.values[name], dtype=float)[index]
    names = [n for n in result.axes if n in (x, y)]
    if y is not None and names[0] != x:
        data = data.T  # now [x, y]
    xs = np.asarray(result.axes[x], dtype=float)
    if ax is None:
        fig, axes = new_figure(width, 2.7 if width == "one" else 3.5)
        ax = axes[0, 0]
    else:
        fig = ax.figure
    finite = data[np.isfinite(data)]
    if log is None:
        log = finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() > 100
    if y is None:
        ax.plot(xs, data, "o-", color="C0", ms=3, lw=1.2)
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(qlabel)
        ax.grid(alpha=0.3, lw=0.5)
    else:
        ys = np.asarray(result.axes[y], dtype=float)
        norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if log and finite.size else None
        mesh = ax.pcolormesh(
            xs, ys, np.ma.masked_invalid(data.T), shading="nearest", cmap=cmap, norm=norm
        )
        fig.colorbar(mesh, ax=ax, label=qlabel)
        ax.set_ylabel(_axis_label(result, y))
        _grid_ticks(ax.xaxis, xs)
        _grid_ticks(ax.yaxis, ys)
    if threshold and x == "alpha":
        thr = _threshold_for(result, y, index)
        if thr is not None and np.ndim(thr) == 0 and np.isfinite(thr):
            ax.axvline(
                thr,
                color="w" if y is not None else "k",
                ls="--",
                lw=1.2,
                label=rf"weak recovery $\alpha_c = {thr:.3g}$",
            )
            _boundary_legend(ax, y is not None)
        elif thr is not None and np.ndim(thr) == 1:
            ys = np.asarray(result.axes[y], dtype=float)
            half = 0.5 * np.ptp(xs) / max(len(xs) - 1, 1)
            lo, hi = xs.min() - half, xs.max() + half
            if half == 0:  # a single alpha: its cell is what pcolormesh drew
                lo, hi = ax.get_xlim()
            bx, by = clip_polyline(thr, ys, lo, hi)
            ax.plot(bx, by, "w--", lw=1.2, label=r"weak recovery $\alpha_c$")
            inside = np.isfinite(thr) & (thr >= lo) & (thr <= hi)
            ax.plot(
                thr[inside],
                ys[inside],
                "o",
                color="w",
                ms=2.5,
                mec="k",
                mew=0.4,
                label="_nolegend_",
            )
            ax.set_xlim(lo, hi)
            _boundary_legend(ax, True)
    ax.set_xlabel(_axis_label(result, x))
    if title:
        ax.set_title(wrap_title(title, width, 8, fraction=0.75))
    return fig


def _boundary_legend(ax, on_map: bool):
    leg = ax.legend(loc="best", frameon=on_map, framealpha=0.6)
    if on_map:
        leg.get_frame().set_facecolor("0.3")
        leg.get_frame().set_edgecolor("none")
        for t in leg.get_texts():
            t.set_color("w")


@_styled
def plot_sweep_curves(
    result,
    name: str = "error",
    along: str = "alpha",
    *,
    where: dict | None = None,
    ax=None,
    logy: bool = True,
    width: str = "two",
    even: bool | None = None,
):
    """The DMFT curves of a sweep against time, one line per value of `along` (the other
    axes fixed by `where`, default their first value). Needs a `dmft` sweep."""
    if name not in result.curves:
        raise ValueError(f"no curves for {name!r} (only dmft sweeps store curves)")
    even = _result_even(result) if even is None else bool(even)
    index = _select(result, along, None, where)
    curves = np.asarray(result.curves[name], dtype=float)[index]
    ses = np.nan_to_num(np.asarray(result.curves[name + "_se"], dtype=float)[index])
    if ax is None:
        fig, axes = new_figure(width, 2.6 if width == "one" else 3.2)
        ax = axes[0, 0]
    else:
        fig = ax.figure
    vals = np.asarray(result.axes[along], dtype=float)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(vals)))
    t = np.arange(curves.shape[-1])
    sym = _SYMBOLS.get(along)
    for v, c, s, col in zip(vals, curves, ses, colors):
        ax.plot(
            t, c, color=col, lw=1.3, label=f"${sym} = {v:.3g}$" if sym else f"{along} = {v:.3g}"
        )
        ax.fill_between(t, c - 2 * s, c + 2 * s, color=col, alpha=0.2, lw=0)
    if logy and _log_scale([curves]):
        ax.set_yscale("log")
    ax.set_xlabel(time_label(t))
    ax.set_ylabel(label(name, even))
    ax.legend(
        title=r"DMFT, $d = \infty$ (bands: ±2 s.e.)", fontsize=7, title_fontsize=7, loc="best"
    )
    ax.grid(alpha=0.3, lw=0.5)
    return fig


@_styled
def plot_law(
    dmft: Trajectory,
    sim: Trajectory | None,
    t: int,
    what: str = "r",
    *,
    kind: str | None = None,
    bins: int = 50,
    ax=None,
    label: str | None = None,
):
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
        fig, axes = new_figure("one", 2.6)
        ax = axes[0, 0]
    else:
        fig = ax.figure
    other = sim.law(kind, t) if sim is not None else None
    pool = other if other is not None else law
    lo, hi = np.asarray(pool.quantile(what, [0.001, 0.999]), dtype=float).ravel()
    edges = np.linspace(lo, hi, bins + 1)
    centres, width = 0.5 * (edges[1:] + edges[:-1]), edges[1] - edges[0]
    full = np.concatenate([[-np.inf], edges, [np.inf]])
    p = law.probabilities(what, full)[:, 1:-1] / width
    ax.plot(centres, p.mean(axis=0), color="C0", lw=1.4, label=label or r"DMFT, $d = \infty$")
    if other is not None:
        q = other.probabilities(what, full)[:, 1:-1] / width
        se = q.std(axis=0, ddof=1) / np.sqrt(q.shape[0]) if q.shape[0] > 1 else 0 * q[0]
        test = compare_laws(law, other, what)
        assert sim is not None
        ax.errorbar(
            centres,
            q.mean(axis=0),
            yerr=2 * se,
            fmt="o",
            ms=2.0,
            color="C3",
            elinewidth=0.7,
            label=f"simulation, $d = {sim.info.get('dim')}$ "
            f"(bars: ±2 s.e.; p = {test.p_value:.2g})",
        )
    symbols = {
        "r": r"$r^t = \langle a, \theta^t \rangle$",
        "y": "$y$",
        "z": "$z$",
        "theta": r"$\theta^t_j$",
        "theta_star": r"$\theta^*_j$",
    }
    ax.set_xlabel(symbols.get(what, what) + f"  ($t = {t}$)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7, frameon=False)
    return fig


# ------------------------------------------------------------------------------------
# saved results (the JSON of the command line) back to objects


def floats(x):
    """A JSON array (NaN written as null, infinities as "inf"/"-inf") as floats."""
    try:
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        if isinstance(x, (list, tuple)):
            return np.asarray([floats(v) for v in x], dtype=float)
        if x is None:
            return np.asarray(math.nan)
        return np.asarray(float(x))


def trajectory_from_dict(d: dict) -> Trajectory:
    """A `Trajectory` (curves and standard errors, no kernels or laws) from its
    `to_dict()` as saved in a JSON file."""
    return Trajectory(
        times=floats(d["times"]),
        values={k: floats(v) for k, v in d["values"].items()},
        stderr={k: floats(v) for k, v in d["stderr"].items()},
        source=d["source"],
        diverged=bool(d.get("diverged", False)),
        diverged_at=d.get("diverged_at"),
        info=dict(d.get("info") or {}),
    )


def sweep_from_dict(d: dict):
    """A `SweepResult` from its `to_dict()` as saved in a JSON file."""
    from ._sweep import SweepResult

    thr = d.get("threshold")
    if thr is not None:
        thr = floats(thr)
        thr = float(thr) if thr.ndim == 0 else thr
    return SweepResult(
        axes={k: floats(v) for k, v in d["axes"].items()},
        values={k: floats(v) for k, v in d["values"].items()},
        curves={k: floats(v) for k, v in (d.get("curves") or {}).items()},
        settings=dict(d.get("settings") or {}),
        hash=str(d.get("hash", "")),
        threshold=thr,
        info=dict(d.get("info") or {}),
    )


__all__ = [
    "compare",
    "plot_curve",
    "plot_phase_diagram",
    "plot_sweep_curves",
    "plot_law",
    "label",
    "title_of",
    "time_label",
    "legend_label",
    "LABELS",
    "AXIS_LABELS",
    "WIDTHS",
    "style",
    "new_figure",
    "figure_legend",
    "add_footer",
    "clip_polyline",
    "trajectory_from_dict",
    "sweep_from_dict",
]
