"""The finite-size engine: the real algorithm on random data, one seed written plainly,
seeds batched with `jax.vmap` (through `lax.map` in memory-sized batches)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._problem import AbstractInit, GradientDescent, InformedInit, Problem, check_problem
from ._trajectory import OBSERVABLES, Trajectory, finish, sample_observables
from ._validate import as_arrays, check_int, check_key


def observables(problem: Problem, theta_star, theta, z, y, r):
    """The observables of one estimate `theta` at finite d (see `Trajectory`)."""
    d = theta.shape[0]
    return sample_observables(problem, y, z, r, m=theta_star @ theta / d, q=theta @ theta / d,
                              p=theta_star @ theta_star / d)


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
    return max(1, int(round(float(problem.alpha) * dim)))


def _run_gd(problem: Problem, algorithm: GradientDescent, theta_star, a, z, y, theta0):
    loss = problem.loss
    eta, lam = algorithm.step_size, problem.lam

    def step(theta, _):
        r = a @ theta
        obs = observables(problem, theta_star, theta, z, y, r)
        grad = a.T @ jax.vmap(loss.grad)(y, r) + lam * theta
        return theta - eta * grad, obs

    theta_T, obs = jax.lax.scan(step, theta0, None, length=algorithm.steps)
    last = observables(problem, theta_star, theta_T, z, y, a @ theta_T)
    obs = jax.tree.map(lambda c, end: jnp.concatenate([c, end[None]]), obs, last)
    return theta_T, obs


def simulate_one(problem: Problem, algorithm: GradientDescent, init, dim: int, n: int, key):
    """One seed: draw data, start, run gradient descent; observables over t = 0..T."""
    k_data, k_init = jax.random.split(key)
    theta_star, a, z, y = draw_data(problem, dim, n, k_data)
    theta0 = init.simulator_start(problem, theta_star, a, y, key=k_init)
    _, obs = _run_gd(problem, algorithm, theta_star, a, z, y, theta0)
    return obs


TRACES = {"simulate": 0}


@eqx.filter_jit
def _simulate_batch(problem, algorithm, init, keys, dim: int, n: int, batch_size: int):
    TRACES["simulate"] += 1
    return jax.lax.map(
        lambda k: simulate_one(problem, algorithm, init, dim, n, k), keys, batch_size=batch_size
    )


def simulate(
    problem: Problem,
    algorithm: GradientDescent,
    init,
    *,
    dim: int,
    num_seeds: int,
    key,
    memory_budget: float = 1.5e9,
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

    **Returns:** a `Trajectory` (source `"simulation"`). Seeds that diverge are
    excluded from the means, counted in `info["num_diverged"]`, and flagged with a
    warning; if all diverge, `diverged` is True.
    """
    check_problem(problem, algorithm)
    dim = check_int("dim", dim, 2)
    num_seeds = check_int("num_seeds", num_seeds, 2)
    check_key(key)
    check_init_supported(init)
    n = num_rows(problem, dim)
    per_seed = 8.0 * n * dim * (1 if isinstance(init, InformedInit) else 3)
    batch_size = int(max(1, min(num_seeds, memory_budget // per_seed)))
    keys = jax.random.split(key, num_seeds)
    problem, algorithm, init = as_arrays((problem, algorithm, init))
    curves = _simulate_batch(problem, algorithm, init, keys, dim, n, batch_size)
    curves = jax.tree.map(np.asarray, curves)
    return finish(curves, "simulation", dict(dim=dim, rows=n, num_seeds=num_seeds))


def check_init_supported(init):
    if not isinstance(init, AbstractInit):
        raise ValueError(f"init must be InformedInit or SpectralInit, got {type(init).__name__}")


__all__ = ["simulate", "OBSERVABLES"]
