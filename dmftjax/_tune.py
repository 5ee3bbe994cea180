r"""Tuning hyperparameters by gradient descent on the theory (optax).

`tune` is a plain optax loop with a progress bar and a record of the path. Its two
wrappers differentiate through the two engines:

- `tune_ridge`: the asymptotic error over the ridge strength, differentiated
  implicitly through the fixed point (one linear solve per gradient);
- `tune_step_size`, `tune_algorithm`: the error after `T` steps over the step size (or
  a momentum) of any method, differentiated through the DMFT's forward-in-time scan,
  with common random numbers (one key for every evaluation), so the Monte Carlo
  objective is a smooth deterministic function.

They optimise the logarithm of a positive hyperparameter, the logit of a momentum.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

from ._algorithms import GradientDescent
from ._estimators import as_estimator
from ._fixed_point import FixedPoint, _solve, _start_vector, check_num_nodes
from ._problem import Problem, check_problem
from ._trajectory import OBSERVABLES
from ._validate import as_arrays, check_int, check_key, check_positive

Mode = Literal["reverse", "forward"]


class TuneResult(eqx.Module):
    r"""The outcome of `tune`.

    - `params`: the final parameters; `value` the objective there.
    - `best_params`, `best_value`: the best point seen on the path.
    - `path_params`: parameters at every evaluation (leading axis = iteration; the last
      entry is the final point), `path_values`: the objective there, `path_grads`:
      the gradient norm there.
    - `aux`: the objective's last carry (e.g. the last `FixedPoint` start).
    """

    params: Any
    value: float
    best_params: Any
    best_value: float
    path_params: Any
    path_values: np.ndarray
    path_grads: np.ndarray
    aux: Any = None


def _forward_value_and_grad(f):
    """Value and gradient by forward mode (`jax.jvp` along each coordinate): works
    through loops with traced trip counts, which reverse mode cannot differentiate;
    cheap for a few parameters."""

    def vg(params, carry):
        flat, unravel = ravel_pytree(params)

        def g(x):
            return f(unravel(x), carry)

        def along(v):
            (val, aux), (dval, _) = jax.jvp(g, (flat,), (v,))
            return val, aux, dval

        vals, auxs, dvals = jax.vmap(along)(jnp.eye(flat.size, dtype=flat.dtype))
        aux = jax.tree.map(lambda a: a[0], auxs)
        return (vals[0], aux), unravel(dvals)

    return vg


def tune(
    objective: Callable,
    init_params,
    *,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 100,
    carry=None,
    mode: Mode = "reverse",
    progress: bool = True,
    desc: str = "tune",
) -> TuneResult:
    r"""Minimise `objective(params)` with an optax optimiser, recording the path.

    **Arguments:**

    - `objective`: a JAX-traceable function of the parameters (a pytree) returning a
      scalar; with `carry` given, `objective(params, carry)` returning
      `(value, new_carry)` (e.g. a warm start passed from one step to the next).
    - `init_params`: the starting parameters.
    - `optimizer`: an optax transformation (default `optax.adam(0.05)`).
    - `steps`: optimiser steps.
    - `carry`: the initial carry (see `objective`), or `None`.
    - `mode`: `"reverse"` (`jax.value_and_grad`) or `"forward"` (one `jax.jvp` per
      parameter: for objectives with loops reverse mode cannot differentiate, and cheap
      for a scalar parameter).
    - `progress`: show a tqdm bar with the current objective.

    **Returns:** a `TuneResult`. A non-finite objective or gradient stops the loop with
    a warning (the last finite point is kept).
    """
    if not callable(objective):
        raise ValueError("objective must be callable")
    steps = check_int("steps", steps, 1)
    if mode not in ("reverse", "forward"):
        raise ValueError(f"mode must be 'reverse' or 'forward', got {mode!r}")
    if optimizer is None:
        optimizer = optax.adam(0.05)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError("optimizer must be an optax.GradientTransformation")
    leaves = jax.tree.leaves(init_params)
    if not leaves:
        raise ValueError("init_params has no array leaves")
    params = jax.tree.map(lambda x: jnp.asarray(x, dtype=float), init_params)
    if not all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(params)):
        raise ValueError("init_params must be finite")

    with_carry = carry is not None
    f = objective if with_carry else (lambda p, c: (objective(p), c))
    if mode == "reverse":
        vg = jax.value_and_grad(f, has_aux=True)
    else:
        vg = _forward_value_and_grad(f)

    @eqx.filter_jit
    def step(params, opt_state, carry):
        (value, new_carry), grads = vg(params, carry)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        gnorm = optax.tree.norm(grads)
        return optax.apply_updates(params, updates), opt_state, value, new_carry, gnorm

    opt_state = optimizer.init(params)
    path, values, gnorms = [], [], []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for _ in bar:
        new_params, new_state, value, new_carry, gnorm = step(params, opt_state, carry)
        value, gnorm = float(value), float(gnorm)
        if not (math.isfinite(value) and math.isfinite(gnorm)):
            warnings.warn(
                f"{desc}: non-finite objective or gradient; stopping early",
                RuntimeWarning,
                stacklevel=2,
            )
            break
        path.append(params)
        values.append(value)
        gnorms.append(gnorm)
        params, opt_state, carry = new_params, new_state, new_carry
        bar.set_postfix(value=f"{value:.4g}")
    # the final point, through the compiled step (its update is discarded): no new trace
    _, _, value, new_carry, gnorm = step(params, opt_state, carry)
    value = float(value)
    if math.isfinite(value):
        carry = new_carry
        path.append(params)
        values.append(value)
        gnorms.append(float(gnorm))
    elif path:  # fall back to the last finite point
        params = path[-1]
        value = values[-1]
    values_arr = np.asarray(values)
    best = int(np.nanargmin(values_arr)) if values_arr.size else 0
    stacked = (
        jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *path) if path else None
    )
    return TuneResult(
        params=params,
        value=value,
        best_params=path[best] if path else params,
        best_value=float(values_arr[best]) if values_arr.size else value,
        path_params=stacked,
        path_values=values_arr,
        path_grads=np.asarray(gnorms),
        aux=carry if with_carry else None,
    )


def grid_search(objective: Callable, grid, *, batched: bool = False):
    r"""Evaluate a scalar `objective` on a 1-d `grid`; returns `(grid, values, argmin)`.
    `batched=True` means `objective` takes the whole grid at once (e.g. a vmapped
    engine); otherwise it is called point by point."""
    if not callable(objective):
        raise ValueError(
            f"objective must be a function of one grid point, got {type(objective).__name__}"
        )
    try:
        grid = np.asarray(grid, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError("grid must be a 1-d array of numbers") from err
    if grid.ndim != 1 or grid.size < 2:
        raise ValueError("grid must be a 1-d array with at least 2 points")
    if not np.isfinite(grid).all():
        raise ValueError(f"grid has non-finite points: {grid[~np.isfinite(grid)].tolist()}")
    if batched:
        values = np.asarray(objective(jnp.asarray(grid)), dtype=float)
        if values.shape != grid.shape:
            raise ValueError(
                f"a batched objective must return one value per grid point "
                f"(shape {grid.shape}), got shape {values.shape}"
            )
    else:
        values = np.asarray([float(objective(g)) for g in grid])
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError(
            "the objective is not finite at any grid point (every run "
            "diverged?): there is no minimiser on this grid"
        )
    if not finite.all():
        warnings.warn(
            f"grid_search: the objective is not finite at "
            f"{grid[~finite].tolist()}; the minimum is over the other points",
            RuntimeWarning,
            stacklevel=2,
        )
    return grid, values, int(np.argmin(np.where(finite, values, np.inf)))


# --------------------------------------------------------------------------------------
# ridge strength: asymptotic error through the fixed point


def _metric(fp: FixedPoint, metric: str):
    return getattr(fp, metric)


def ridge_objective(
    problem: Problem, *, metric: str = "error", num_nodes: int = 48, branch: str = "global"
):
    r"""`objective(log_lam, x) -> (metric, x_new)` for `tune`: the fixed point of
    `problem` with ridge `exp(log_lam)`, warm-started from `x = (kappa, m, s)` (the
    previous solution, carried). Differentiable (implicitly) in `log_lam`."""
    if metric not in ("error", "test_error", "train_loss"):
        raise ValueError(f"metric must be 'error', 'test_error' or 'train_loss', got {metric!r}")
    check_problem(problem)
    num_nodes = check_num_nodes(num_nodes)
    base = as_arrays(problem)

    def objective(log_lam, x):
        p = eqx.tree_at(lambda p: p.regulariser.lam, base, jnp.exp(log_lam))
        fp = _solve(p, x, True, num_nodes, branch, 0, 64, 1e-11, 1e-12)
        x_new = jax.lax.stop_gradient(jnp.stack([fp.kappa, fp.m, fp.s]))
        ok = fp.converged & (fp.unstable_mass == 0)
        return _metric(fp, metric), jnp.where(ok, x_new, x)

    return objective


def tune_ridge(
    problem: Problem,
    *,
    lam0: float = 0.1,
    steps: int = 60,
    optimizer: optax.GradientTransformation | None = None,
    start=None,
    metric: str = "error",
    num_nodes: int = 48,
    progress: bool = True,
) -> TuneResult:
    r"""Minimise the asymptotic (fixed-point) `metric` over the ridge strength `lam`,
    optimising `log lam` with gradients from implicit differentiation.

    **Arguments:** `problem` (its own `lam` is ignored); `lam0` the starting ridge;
    `steps`; `optimizer` (default `optax.rprop(0.1)` on `log lam`: sign-based steps that
    grow while the sign holds and halve when it flips, which suits a smooth,
    deterministic 1-d objective whose gradient shrinks by decades near a flat optimum,
    where Adam's memory of early large gradients stalls it); `start` the fixed
    point's start at `lam0` (as for `fixed_point`); `metric` `"error"`, `"test_error"`
    or `"train_loss"`; `num_nodes`; `progress`.

    **Returns:** a `TuneResult` whose params are `log lam` (`jnp.exp(result.params)` is
    the tuned ridge); `aux` is the last `(kappa, m, s)`.
    """
    check_problem(problem)
    check_positive("lam0", lam0)
    if metric not in ("error", "test_error", "train_loss"):
        raise ValueError(f"metric must be 'error', 'test_error' or 'train_loss', got {metric!r}")
    p0 = eqx.tree_at(lambda p: p.regulariser.lam, as_arrays(problem), jnp.asarray(float(lam0)))
    x0, known, picard = _start_vector(start, None)
    first = _solve(p0, x0, known, num_nodes, "global", picard, 64, 1e-11, 1e-12)
    if not bool(first.converged):
        raise ValueError(
            f"the fixed point at lam0 = {lam0} did not converge; pass a start (e.g. a "
            "late-time DMFT trajectory) or another lam0"
        )
    x = jnp.stack([first.kappa, first.m, first.s])
    optimizer = optax.rprop(0.1) if optimizer is None else optimizer
    return tune(
        ridge_objective(problem, metric=metric, num_nodes=num_nodes),
        jnp.log(jnp.asarray(float(lam0))),
        optimizer=optimizer,
        steps=steps,
        carry=x,
        progress=progress,
        desc="tune_ridge",
    )


# --------------------------------------------------------------------------------------
# step size: error after T steps through the DMFT scan


# the tunable fields of a method and their unconstrained parametrisation: the step size
# through its logarithm, a momentum in [0, 1) through its logit
_FIELDS = {
    "step_size": (jnp.exp, math.log),
    "momentum": (jax.nn.sigmoid, lambda b: math.log(b / (1 - b))),
}


def tuned_value(u, transform: str = "log"):
    """The hyperparameter from the optimiser's unconstrained parameter `u` (numpy):
    `exp(u)` for `"log"` (the ridge, a step size), `sigmoid(u)` for `"logit"` (a
    momentum tuned by `tune_algorithm`)."""
    if transform not in ("log", "logit"):
        raise ValueError(f"transform must be 'log' or 'logit', got {transform!r}")
    u = np.asarray(u, dtype=float)
    return np.exp(u) if transform == "log" else 1 / (1 + np.exp(-u))


def _tunable(algorithm, field: str, horizon):
    """The template method and the field to tune, checked before any tracing."""
    if field not in _FIELDS:
        raise ValueError(f"field must be one of {sorted(_FIELDS)}, got {field!r}")
    if not hasattr(algorithm, field):
        raise ValueError(f"{type(algorithm).__name__} has no field {field!r} to tune")
    if horizon is not None and check_int("horizon", horizon, 1) != algorithm.steps:
        raise ValueError(
            f"horizon = {horizon} differs from the algorithm's steps = "
            f"{algorithm.steps}: give one of them"
        )
    value = getattr(algorithm, field)
    if callable(value) or np.ndim(value) != 0:
        raise ValueError(
            f"the algorithm's {field} must be a number to tune it (a schedule "
            f"is tuned with `tune` on its own parameters, see "
            f"benchmarks/bench_schedule.py)"
        )
    return algorithm


def algorithm_objective(
    problem: Problem,
    algorithm,
    init,
    *,
    num_samples: int,
    key,
    field: str = "step_size",
    num_replicas: int = 1,
    estimator="tangent",
    metric: str = "error",
):
    r"""`objective(u) -> metric after the algorithm's steps` from the DMFT with a fixed
    key (common random numbers), averaged over `num_replicas` replicas of the traceable
    engine `dmft_replica`, where the method's `field` is set from the unconstrained `u`:
    `step_size = exp(u)`, `momentum = sigmoid(u)`. `algorithm` is the template (any
    method with that field: `GradientDescent`, `HeavyBall`, `Nesterov`, a user's own)."""
    from ._dmft import check_dmft_resources, dmft_replica  # imported late: import order

    check_problem(problem, algorithm)
    algorithm = _tunable(algorithm, field, None)
    num_samples = check_int("num_samples", num_samples, 2)
    num_replicas = check_int("num_replicas", num_replicas, 1)
    check_key(key)
    estimator = as_estimator(estimator)
    _check_metric(metric)
    # the replicas run at once (vmapped); an informed start has the fewest slots
    check_dmft_resources(num_samples, algorithm.steps + 3, num_replicas, estimator.engine)
    keys = jax.random.split(key, num_replicas)
    to_field = _FIELDS[field][0]

    def objective(u):
        alg = eqx.tree_at(lambda a: getattr(a, field), algorithm, to_field(u))

        def one(k):
            obs, _ = dmft_replica(
                problem, alg, init, key=k, num_samples=num_samples, estimator=estimator
            )
            return obs[metric][-1]

        return jnp.mean(jax.vmap(one)(keys))

    return objective


def step_size_objective(
    problem: Problem,
    init,
    *,
    horizon: int,
    num_samples: int,
    key,
    num_replicas: int = 1,
    estimator: str = "tangent",
    metric: str = "error",
):
    r"""`objective(log_eta) -> metric after `horizon` GD steps` (see
    `algorithm_objective`, of which this is the case `GradientDescent`, `step_size`)."""
    return algorithm_objective(
        problem,
        GradientDescent(1.0, horizon),
        init,
        num_samples=num_samples,
        key=key,
        num_replicas=num_replicas,
        estimator=estimator,
        metric=metric,
    )


def tune_step_size(
    problem: Problem,
    init,
    *,
    horizon: int | None = None,
    num_samples: int,
    key,
    eta0: float = 0.02,
    steps: int = 40,
    num_replicas: int = 1,
    optimizer: optax.GradientTransformation | None = None,
    estimator: str = "tangent",
    mode: Mode = "forward",
    metric: str = "error",
    progress: bool = True,
    algorithm=None,
) -> TuneResult:
    r"""Minimise the DMFT `metric` after `horizon` steps over the step size,
    optimising `log eta` by differentiating through the DMFT scan.

    **Arguments:** `problem`, `init` (e.g. `InformedInit`); `horizon` the number of
    steps `T`; `num_samples`, `num_replicas`, `key` of the DMFT (the same key at every
    evaluation: common random numbers); `eta0`; `steps` optimiser steps; `optimizer`
    (default `optax.rprop(0.1)`, see `tune_ridge`); `estimator` of the DMFT; `mode`
    `"forward"` (default: forward-mode differentiation through the scan, which also
    works through the DMFT's inner adjoint loop, whose traced trip count reverse mode
    cannot differentiate) or `"reverse"`; `metric` an observable name; `algorithm` the
    method whose step is tuned (default `GradientDescent(eta0, horizon)`; e.g.
    `HeavyBall(0.02, 0.5, 30)` tunes heavy ball's step at momentum 0.5; its own step
    size is replaced by `eta0`, `horizon` may then be left out).

    **Returns:** a `TuneResult` whose params are `log eta`.
    """
    check_positive("eta0", eta0)
    if algorithm is None:
        if horizon is None:
            raise ValueError("give horizon (the number of steps) or an algorithm")
        algorithm = GradientDescent(float(eta0), check_int("horizon", horizon, 1))
    return tune_algorithm(
        problem,
        algorithm,
        init,
        field="step_size",
        start=eta0,
        horizon=horizon,
        num_samples=num_samples,
        key=key,
        steps=steps,
        num_replicas=num_replicas,
        optimizer=optimizer,
        estimator=estimator,
        mode=mode,
        metric=metric,
        progress=progress,
    )


def tune_algorithm(
    problem: Problem,
    algorithm,
    init,
    *,
    field: str = "step_size",
    num_samples: int,
    key,
    start: float | None = None,
    horizon: int | None = None,
    steps: int = 40,
    num_replicas: int = 1,
    optimizer: optax.GradientTransformation | None = None,
    estimator="tangent",
    mode: Mode = "forward",
    metric: str = "error",
    progress: bool = True,
) -> TuneResult:
    r"""Minimise the DMFT `metric` after the method's steps over one of its fields
    (`"step_size"`, optimised as `log eta`, or `"momentum"`, optimised as its logit),
    differentiating through the DMFT scan with common random numbers.

    **Arguments:** `problem`, `algorithm` (the template: its other fields stay fixed),
    `init`; `field`; `num_samples`, `num_replicas`, `key` of the DMFT; `start` the
    field's starting value (default: the template's); `horizon` optional, must equal the
    algorithm's steps; `steps` optimiser steps; `optimizer` (default `optax.rprop(0.1)`);
    `estimator`, `mode`, `metric`, `progress` as in `tune_step_size`.

    **Returns:** a `TuneResult` whose params are the unconstrained `u` (`exp(u)` or
    `sigmoid(u)` is the tuned value).
    """
    check_problem(problem, algorithm)
    algorithm = _tunable(algorithm, field, horizon)
    num_samples = check_int("num_samples", num_samples, 2)
    num_replicas = check_int("num_replicas", num_replicas, 1)
    check_key(key)
    start = float(getattr(algorithm, field)) if start is None else start
    if field == "step_size":
        check_positive("start", start)
    elif not (
        isinstance(start, (int, float)) and not isinstance(start, bool) and 0.0 < start < 1.0
    ):
        raise ValueError(f"start must be a momentum in (0, 1) to tune it, got {start!r}")
    if num_samples <= algorithm.steps + 3:
        raise ValueError(
            f"num_samples = {num_samples} must exceed the number of steps + 3 "
            f"= {algorithm.steps + 3}"
        )
    estimator = as_estimator(estimator)
    _check_metric(metric)
    if mode not in ("reverse", "forward"):
        raise ValueError(f"mode must be 'reverse' or 'forward', got {mode!r}")
    optimizer = optax.rprop(0.1) if optimizer is None else optimizer
    obj = algorithm_objective(
        problem,
        algorithm,
        init,
        num_samples=num_samples,
        key=key,
        field=field,
        num_replicas=num_replicas,
        estimator=estimator,
        metric=metric,
    )
    u0 = jnp.asarray(_FIELDS[field][1](float(start)))
    return tune(
        obj,
        u0,
        optimizer=optimizer,
        steps=steps,
        mode=mode,
        progress=progress,
        desc=f"tune {field}",
    )


def _check_metric(metric):
    if metric not in OBSERVABLES:
        raise ValueError(f"metric must be one of {OBSERVABLES}, got {metric!r}")


# --------------------------------------------------------------------------------------
# figure


_PANEL_KEYS = {"grid", "values", "result", "transform", "name", "ylabel", "title", "exact", "logy"}


def _check_panels(panels) -> None:
    if isinstance(panels, dict) or not isinstance(panels, (list, tuple)) or not panels:
        raise ValueError("panels must be a non-empty list of dicts (one per panel)")
    for i, panel in enumerate(panels):
        if not isinstance(panel, dict):
            raise ValueError(f"panel {i} must be a dict, got {type(panel).__name__}")
        missing = {"grid", "values", "result"} - panel.keys()
        unknown = panel.keys() - _PANEL_KEYS
        if missing or unknown:
            raise ValueError(
                f"panel {i}: "
                + "; ".join(
                    ([f"missing {sorted(missing)}"] if missing else [])
                    + (
                        [f"unknown keys {sorted(unknown)} (known: {sorted(_PANEL_KEYS)})"]
                        if unknown
                        else []
                    )
                )
            )
        if not isinstance(panel["result"], TuneResult):
            raise ValueError(
                f"panel {i}: result must be a TuneResult (from tune), got "
                f"{type(panel['result']).__name__}"
            )
        grid, vals = (
            np.asarray(panel["grid"], dtype=float),
            np.asarray(panel["values"], dtype=float),
        )
        if grid.ndim != 1 or grid.shape != vals.shape or grid.size < 2:
            raise ValueError(
                f"panel {i}: grid and values must be 1-d of one length >= 2, got "
                f"shapes {grid.shape} and {vals.shape}"
            )
        if not np.isfinite(vals).any():
            raise ValueError(f"panel {i}: the objective is not finite anywhere on the grid")
        if panel.get("transform", "log") not in ("log", "logit"):
            raise ValueError(
                f"panel {i}: transform must be 'log' or 'logit', got {panel['transform']!r}"
            )


def plot_tuning(panels: list[dict]):
    r"""One figure with a panel per tuned hyperparameter.

    Each panel is a dict with `grid` (hyperparameter values), `values` (objective on
    the grid), `result` (a `TuneResult` whose params are the log of the
    hyperparameter, or its logit with `"transform": "logit"`: a momentum tuned by
    `tune_algorithm`), and optionally `name` (axis label), `ylabel`, `title`, `exact`
    (a known optimum to mark), `logy` (log scale for the objective). Draws the grid
    curve, its argmin, the optimiser's path (coloured by iteration) and the tuned value.

    **Returns:** a matplotlib `Figure`.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, any backend
    from matplotlib.ticker import NullFormatter

    _check_panels(panels)
    fig = Figure(figsize=(5.2 * len(panels), 4.0))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        grid = np.asarray(panel["grid"], dtype=float)
        vals = np.asarray(panel["values"], dtype=float)
        res: TuneResult = panel["result"]
        ax.plot(grid, vals, "-", color="0.3", lw=1.5, label="grid")
        ig = int(np.nanargmin(vals))
        ax.axvline(grid[ig], color="0.5", ls=":", label=f"grid argmin {grid[ig]:.4g}")
        transform = panel.get("transform", "log")
        path_x = tuned_value(np.asarray(res.path_params, dtype=float).ravel(), transform)
        sc = ax.scatter(
            path_x,
            res.path_values,
            c=np.arange(path_x.size),
            cmap="viridis",
            s=14,
            zorder=3,
            label="optimiser path",
        )
        tuned = float(tuned_value(res.params, transform))
        ax.plot([tuned], [res.value], "r*", ms=14, zorder=4, label=f"tuned {tuned:.4g}")
        if panel.get("exact") is not None:
            ax.axvline(
                panel["exact"], color="tab:red", ls="--", lw=1, label=f"exact {panel['exact']:.4g}"
            )
        if transform == "log":
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        if panel.get("logy"):
            ax.set_yscale("log")
        ax.set_xlabel(panel.get("name", "hyperparameter"))
        ax.set_ylabel(panel.get("ylabel", "objective"))
        ax.set_title(panel.get("title", ""))
        ax.legend(fontsize=8)
        fig.colorbar(sc, ax=ax, label="iteration")
    fig.tight_layout()
    return fig


__all__ = [
    "tune",
    "TuneResult",
    "grid_search",
    "tune_ridge",
    "ridge_objective",
    "tune_step_size",
    "step_size_objective",
    "tune_algorithm",
    "algorithm_objective",
    "tuned_value",
    "plot_tuning",
]
