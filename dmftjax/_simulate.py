"""The finite-size engine: the real algorithm on random data, one seed written plainly,
seeds batched with `jax.vmap` (through `lax.map` in memory-sized batches)."""

from __future__ import annotations

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._algorithms import MASK_STREAM
from ._problem import AbstractInit, InformedInit, Problem, check_problem
from ._progress import progress_bar, tick
from ._trajectory import (
    OBSERVABLES,
    Trajectory,
    cut_at_divergence,
    finish,
    on_time_axis,
    sample_observables,
)
from ._validate import as_arrays, check_int, check_key, check_positive, check_resources


def observables(problem: Problem, theta_star, theta, z, y, r, test=None):
    """The observables of one estimate `theta` at finite d (see `Trajectory`). With
    `test = (a_test, y_test)` the test error is measured on those fresh rows; otherwise
    it is the exact conditional expectation given `theta` for a Gaussian design."""
    d = theta.shape[0]
    obs = sample_observables(
        problem,
        y,
        z,
        r,
        m=theta_star @ theta / d,
        q=theta @ theta / d,
        p=theta_star @ theta_star / d,
    )
    if test is not None:
        a_test, y_test = test
        obs["test_error"] = jnp.mean(jax.vmap(problem.loss)(y_test, a_test @ theta))
    return obs


def draw_data(problem: Problem, dim: int, n: int, key):
    """`theta*`, design `A` (`[n, dim]`, entries N(0, 1/d)), indices `z = A theta*`, labels `y`."""
    k_theta, k_a, k_eps = jax.random.split(key, 3)
    theta_star = problem.prior.sample((dim,), key=k_theta)
    a = jax.random.normal(k_a, (n, dim)) / jnp.sqrt(dim)
    z = a @ theta_star
    eps = jax.random.normal(k_eps, (n,))
    y = jax.vmap(problem.model.link)(z, eps)
    return theta_star, a, z, y


def num_rows(problem: Problem, dim: int) -> int:
    """`n = round(alpha d)`, refused below 2 rows (no sample statistics, no spectrum)."""
    n = int(round(float(problem.alpha) * dim))
    if n < 2:
        raise ValueError(
            f"alpha d = {float(problem.alpha) * dim:.3g} gives {n} rows: a "
            f"simulation needs at least 2; raise dim to at least "
            f"{math.ceil(1.5 / float(problem.alpha))}"
        )
    return n


class _Options(eqx.Module):
    """What one seed records besides the observables (static)."""

    test_rows: int = eqx.field(static=True, default=0)
    kernels: bool = eqx.field(static=True, default=False)
    law_times: tuple = eqx.field(static=True, default=())
    progress: bool = eqx.field(static=True, default=False)


def _run(
    problem: Problem,
    algorithm,
    theta_star,
    a,
    z,
    y,
    theta0,
    test,
    probes,
    key,
    progress: bool = False,
):
    """The algorithm from `theta0` (its own `simulator_step`, one key per step); with
    `probes` (`[T, d]`) also the linear response to a field `h^s` added to the gradient
    at step `s`, carried as a forward tangent: `R(t, s)` is estimated by
    `<h^s, d theta^t> / d`."""
    loss = problem.loss
    co = algorithm.coefficients(problem)
    steps = algorithm.steps

    # minibatches: the run's mask key, the same at every step (an epoch is one permutation)
    mask_key = jax.random.fold_in(key, MASK_STREAM)

    def update(state, field, t, k):
        weights = algorithm.row_weights(mask_key, t, a.shape[0])

        def gradient(phi):
            g = jax.vmap(loss.grad)(y, a @ phi)
            return a.T @ (g if weights is None else weights * g)

        return algorithm.simulator_step(co, state, t, gradient, field, k)

    def step(carry, xs):
        state, dstate = carry
        t, h, k = xs
        tick(t, progress)
        theta = state[0]
        obs = observables(problem, theta_star, theta, z, y, a @ theta, test)
        if probes is None:
            return (update(state, 0.0, t, k), None), (obs, theta)
        new, dnew = jax.jvp(
            lambda s_, f_: update(s_, f_, t, k), (state, jnp.zeros_like(theta)), (dstate, h)
        )
        return (new, dnew), (obs, theta, dstate[0])

    state0 = algorithm.simulator_init(theta0)
    keys = jax.random.split(key, steps)
    xs = (jnp.arange(steps), probes if probes is not None else jnp.zeros((steps, 0)), keys)
    init = (state0, None if probes is None else jnp.zeros_like(state0))
    (state_T, dstate_T), out = jax.lax.scan(step, init, xs)
    theta_T = state_T[0]
    last = observables(problem, theta_star, theta_T, z, y, a @ theta_T, test)
    obs = jax.tree.map(lambda c, end: jnp.concatenate([c, end[None]]), out[0], last)
    thetas = jnp.concatenate([out[1], theta_T[None]])
    dthetas = None
    if probes is not None:
        assert dstate_T is not None  # its carry started as zeros_like(state0)
        dthetas = jnp.concatenate([out[2], dstate_T[0][None]])
    return obs, thetas, dthetas


def simulate_one(
    problem: Problem, algorithm, init, dim: int, n: int, key, options: _Options = _Options()
):
    """One seed: draw data, start, run the algorithm; observables over t = 0..T, and
    what `options` asks for (kernels, laws, the start's diagnostics)."""
    k_data, k_init = jax.random.split(key)
    theta_star, a, z, y = draw_data(problem, dim, n, k_data)
    theta0, start_info = init.simulator_start_with_info(problem, theta_star, a, y, key=k_init)
    test = None
    if options.test_rows:  # fresh rows of the same law, never seen by the algorithm
        k_test = jax.random.fold_in(k_data, 1)
        k_a, k_eps = jax.random.split(k_test)
        a_test = jax.random.normal(k_a, (options.test_rows, dim)) / jnp.sqrt(dim)
        eps = jax.random.normal(k_eps, (options.test_rows,))
        test = (a_test, jax.vmap(problem.model.link)(a_test @ theta_star, eps))
    probes = None
    if options.kernels:
        probes = jax.random.normal(jax.random.fold_in(k_data, 2), (algorithm.steps, dim))
    obs, thetas, dthetas = _run(
        problem,
        algorithm,
        theta_star,
        a,
        z,
        y,
        theta0,
        test,
        probes,
        jax.random.fold_in(k_init, 3),
        options.progress,
    )
    out = {"obs": obs, "start": start_info}
    if options.kernels:
        assert probes is not None  # drawn above under the same condition
        out["C"] = thetas @ thetas.T / dim
        resp = dthetas @ probes.T / dim  # [T+1, T]: <d theta^t, h^s> / d
        resp = jnp.concatenate([resp, jnp.zeros((resp.shape[0], 1))], axis=1)
        out["R"] = jnp.tril(resp, -1)
    if options.law_times:
        m = thetas @ theta_star / dim
        times = jnp.asarray(options.law_times)
        sign = jnp.where(m[times] >= 0, 1.0, -1.0) if problem.model.even else jnp.ones(len(times))
        th = thetas[times] * sign[:, None]
        out["rows"] = {"z": z, "y": y, "r": th @ a.T}
        out["coordinates"] = {"theta_star": theta_star, "theta": th}
    return out


TRACES = {"simulate": 0}


@eqx.filter_jit
def _simulate_batch(
    problem, algorithm, init, keys, dim: int, n: int, batch_size: int, options: _Options
):
    TRACES["simulate"] += 1
    return jax.lax.map(
        lambda k: simulate_one(problem, algorithm, init, dim, n, k, options),
        keys,
        batch_size=batch_size,
    )


def simulate(
    problem: Problem,
    algorithm,
    init,
    *,
    dim: int,
    num_seeds: int,
    key,
    memory_budget: float = 1.5e9,
    test_rows: int | None = None,
    kernels: bool = False,
    laws_at=(),
    progress: bool = False,
) -> Trajectory:
    r"""Run the real algorithm at dimension `dim` on `num_seeds` independent draws of
    `(theta*, A, eps, theta^0)`, and return the seed mean of every observable with
    its standard error across seeds.

    **Arguments:**

    - `problem`, `algorithm`, `init`: what to run (as for `solve_dmft`).
    - `dim`: the dimension `d`; `n = round(alpha d)` rows.
    - `num_seeds`: independent seeds (at least 2, for a standard error).
    - `key`: a `jax.random` key; seed `i` uses `jax.random.split(key, num_seeds)[i]`.
    - `memory_budget`: bytes of design matrices held at once; seeds beyond it are run
      in sequence (`lax.map` with a batch size).
    - `test_rows`: the test error is the mean loss on this many fresh rows per seed,
      drawn from the same law and never seen by the algorithm (default: as many as the
      training rows); `0` uses the exact conditional expectation given `theta^t` for a
      Gaussian design instead (no Monte Carlo error, and the same function the DMFT uses).
    - `kernels`: also measure `C(t, s) = <theta^t, theta^s>/d` and the response
      `R(t, s)`: a random field `h^s` (i.i.d. N(0, 1) entries, independent across steps)
      is added to the gradient at every step and its effect carried exactly as a forward
      tangent, so `<h^s, d theta^t>/d` estimates `R(t, s)` without bias (its error,
      `O(d^-1/2)` per seed, averages over seeds). `kernels["C"]`, `kernels["R"]` and
      their standard errors `C_se`, `R_se`.
    - `laws_at`: times at which to keep the empirical laws of one row `(z, y, r^t)` and
      one coordinate `(theta*, theta^t)` (the global sign corrected for even links):
      `Trajectory.law("row", t)`, `Trajectory.law("coordinate", t)`.
    - `progress`: a live bar (tqdm, on stderr) over the time steps of the batches of
      seeds as they run (a host callback per step from inside the compiled loop).

    **Returns:** a `Trajectory` (source `"simulation"`). Seeds that diverge are
    excluded from the means, counted in `info["num_diverged"]` with what the means over
    every seed would be (`info["mean_all_runs"]`) and flagged with a warning; if all
    diverge, `diverged` is True. A spectral start whose iterative eigensolver did not
    converge on some seed is reported in `info["eigensolver_converged"]` (per seed) and
    by a warning.
    """
    check_problem(problem, algorithm)
    dim = check_int("dim", dim, 2)
    num_seeds = check_int("num_seeds", num_seeds, 2)
    check_key(key)
    check_init_supported(init)
    n = num_rows(problem, dim)
    test_rows = n if test_rows is None else check_int("test_rows", test_rows, 0)
    law_times = _check_times(laws_at, algorithm.steps)
    options = _Options(
        test_rows=test_rows, kernels=bool(kernels), law_times=law_times, progress=bool(progress)
    )
    check_positive("memory_budget", memory_budget)
    per_seed = 8.0 * (n + test_rows) * dim * (1 if isinstance(init, InformedInit) else 3)
    if kernels:
        per_seed += 8.0 * 3 * (algorithm.steps + 1) * dim
    check_resources(
        f"simulate (dim = {dim}, {n} rows)",
        largest=max(n, test_rows) * dim,
        nbytes=per_seed,
        fix="use a smaller dim (the finite-size extrapolation "
        "over several d is the check that matters)",
    )
    # what every seed returns: its curves (and kernels, laws), held together at the end
    kept = (len(OBSERVABLES) + 4) * (algorithm.steps + 1)
    if kernels:
        kept += 2 * (algorithm.steps + 1) ** 2
    kept += (3 * n + 2 * dim) * len(law_times)
    check_resources(
        f"simulate ({num_seeds} seeds)",
        largest=num_seeds * kept,
        nbytes=8.0 * num_seeds * kept + per_seed,
        fix="use fewer seeds (or run them in several calls)",
    )
    batch_size = int(max(1, min(num_seeds, memory_budget // per_seed)))
    keys = jax.random.split(key, num_seeds)
    problem, algorithm, init = as_arrays((problem, algorithm, init))
    # one callback per step of each batch of seeds (lax.map: full batches, then the rest)
    ticks = algorithm.steps * (num_seeds // batch_size + int(num_seeds % batch_size > 0))
    with progress_bar(ticks, f"simulation (d = {dim})", progress):
        out = _simulate_batch(problem, algorithm, init, keys, dim, n, batch_size, options)
    out = jax.tree.map(np.asarray, out)
    info = dict(dim=dim, rows=n, num_seeds=num_seeds, test_rows=test_rows)
    start = out["start"]
    if "eigensolver_converged" in start:
        conv = start["eigensolver_converged"].astype(bool)
        info.update(
            eigensolver_converged=conv.tolist(),
            eigensolver_residual=start["eigensolver_residual"].tolist(),
        )
        if not conv.all():
            warnings.warn(
                f"simulate: the iterative eigensolver of the spectral start did not converge "
                f"on {int((~conv).sum())} of {num_seeds} seeds (largest relative residual "
                f"{float(np.max(start['eigensolver_residual'])):.1e}): their start is not the "
                "top eigenvector; use SpectralInit(method='dense'), raise max_restarts, or "
                "clip the preprocessing from below",
                RuntimeWarning,
                stacklevel=2,
            )
    traj = on_time_axis(finish(out["obs"], "simulation", info), algorithm.times())
    if kernels:
        ok = _kept(traj, num_seeds)
        with warnings.catch_warnings():  # diverged seeds overflow (cut below)
            warnings.simplefilter("ignore", RuntimeWarning)
            traj = eqx.tree_at(
                lambda t: t.kernels,
                traj,
                {
                    "C": out["C"][ok].mean(0),
                    "C_se": _se(out["C"][ok]),
                    "R": out["R"][ok].mean(0),
                    "R_se": _se(out["R"][ok]),
                },
                is_leaf=lambda x: x is None,
            )
    if law_times:
        ok = _kept(traj, num_seeds)
        laws = {}
        for i, t in enumerate(law_times):
            rows = {k: (v[ok] if v.ndim == 2 else v[ok][:, i]) for k, v in out["rows"].items()}
            coords = {
                k: (v[ok] if v.ndim == 2 else v[ok][:, i]) for k, v in out["coordinates"].items()
            }
            laws[("row", t)] = rows
            laws[("coordinate", t)] = coords
        traj = eqx.tree_at(lambda t: t.laws, traj, laws, is_leaf=lambda x: x is None)
    return cut_at_divergence(traj)


def _kept(traj: Trajectory, num_runs: int) -> np.ndarray:
    """The runs the means are over (the non-diverged ones, or all if all diverged)."""
    keep = np.ones(num_runs, bool)
    bad = traj.info.get("diverged_runs", [])
    keep[bad] = False
    return keep if keep.any() else np.ones(num_runs, bool)


def _se(x):
    return (
        x.std(axis=0, ddof=1) / math.sqrt(x.shape[0])
        if x.shape[0] > 1
        else np.full(x.shape[1:], np.nan)
    )


def _check_times(times, steps: int) -> tuple:
    try:
        times = tuple(times)
    except TypeError:
        raise ValueError(f"laws_at must be a sequence of steps, got {times!r}") from None
    out = []
    for t in times:
        t = check_int("laws_at entry", t, 0)
        if t > steps:
            raise ValueError(f"laws_at entry {t} is beyond the last step {steps}")
        out.append(t)
    return tuple(out)


def check_init_supported(init):
    if not isinstance(init, AbstractInit):
        raise ValueError(f"init must be InformedInit or SpectralInit, got {type(init).__name__}")


__all__ = ["simulate", "OBSERVABLES"]
