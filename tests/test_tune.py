"""Tuning: the optax loop, the ridge through the fixed point (implicit gradients), the
step size through the DMFT scan (forward mode, common random numbers), against dense
grid searches."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dmftjax as dj
from dmftjax._fixed_point import fixed_point_sweep
from dmftjax._tune import (
    TuneResult,
    grid_search,
    plot_tuning,
    step_size_objective,
    tune,
    tune_ridge,
    tune_step_size,
)


def test_tune_generic_quadratic_pytree():
    target = {"a": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}

    def objective(p):
        return jnp.sum((p["a"] - target["a"]) ** 2) + (p["b"] - target["b"]) ** 2

    init = {"a": jnp.zeros(2), "b": jnp.array(3.0)}
    for mode in ("reverse", "forward"):
        res = tune(objective, init, optimizer=optax.adam(0.1), steps=300, mode=mode, progress=False)
        assert isinstance(res, TuneResult)
        np.testing.assert_allclose(res.params["a"], target["a"], atol=1e-3)
        assert res.path_values.shape == (301,) and res.path_params["a"].shape == (301, 2)
        assert res.path_values[-1] < 1e-6 < res.path_values[0]
        assert res.best_value <= res.path_values.min() + 1e-15


def test_tune_stops_on_non_finite():
    with pytest.warns(RuntimeWarning, match="non-finite"):
        res = tune(
            lambda x: jnp.where(x > 1.0, jnp.nan, (x - 5.0) ** 2),
            jnp.array(0.0),
            optimizer=optax.sgd(0.3),
            steps=20,
            progress=False,
        )
    assert np.isfinite(res.value) and float(res.params) <= 1.0


def test_tune_bad_inputs():
    with pytest.raises(ValueError, match="callable"):
        tune(3.0, jnp.array(0.0))
    with pytest.raises(ValueError, match="steps"):
        tune(lambda x: x**2, jnp.array(0.0), steps=0)
    with pytest.raises(ValueError, match="mode"):
        tune(lambda x: x**2, jnp.array(0.0), mode="sideways")
    with pytest.raises(ValueError, match="optimizer"):
        tune(lambda x: x**2, jnp.array(0.0), optimizer="adam")
    with pytest.raises(ValueError, match="finite"):
        tune(lambda x: x**2, jnp.array(jnp.inf))
    problem = dj.Problem(dj.LinearModel(0.5), dj.SquareLoss(), alpha=3.0)
    with pytest.raises(ValueError, match="lam0"):
        tune_ridge(problem, lam0=-1.0)
    with pytest.raises(ValueError, match="metric"):
        tune_ridge(problem, metric="accuracy")
    with pytest.raises(ValueError, match="num_samples"):
        tune_step_size(
            problem, dj.InformedInit(0.5), horizon=20, num_samples=10, key=jax.random.key(0)
        )
    with pytest.raises(ValueError, match="key"):
        tune_step_size(problem, dj.InformedInit(0.5), horizon=20, num_samples=100, key=None)


def _log_grid_check(grid, values, tuned):
    """The tuned value sits within one grid spacing (in log) of the grid's argmin."""
    i = int(np.argmin(values))
    spacing = np.log(grid[1]) - np.log(grid[0])
    assert abs(np.log(tuned) - np.log(grid[i])) <= spacing, (tuned, grid[i])


def _as_good_as_grid(value, values):
    """No worse than the grid's argmin's neighbours: optimal within the grid resolution."""
    i = int(np.argmin(values))
    assert value <= min(values[max(i - 1, 0)], values[min(i + 1, values.size - 1)]), value


def test_tune_ridge_least_squares_closed_form():
    # ridge least squares: the Bayes-optimal ridge is lam* = noise^2 (prior variance 1)
    noise = 0.5
    problem = dj.Problem(dj.LinearModel(noise), dj.SquareLoss(), alpha=3.0)
    res = tune_ridge(problem, lam0=0.02, steps=60, num_nodes=12, progress=False)
    lam = float(jnp.exp(res.params))
    assert abs(lam - noise**2) < 2e-3
    grid = np.logspace(-2, 0, 41)
    sweep = fixed_point_sweep(problem, lam=grid, num_nodes=12, start=(0.5, 1.0, 1.1))
    _log_grid_check(grid, np.asarray(sweep.error), lam)


def test_tune_ridge_phase_retrieval_matches_grid():
    problem = dj.Problem(dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=3.0)
    res = tune_ridge(problem, lam0=0.1, steps=40, num_nodes=16, progress=False)
    lam = float(jnp.exp(res.params))
    grid = np.logspace(-3, -1, 21)
    sweep = fixed_point_sweep(problem, lam=grid, num_nodes=16)
    assert bool(sweep.converged.all())
    values = np.asarray(sweep.error)
    _log_grid_check(grid, values, lam)
    _as_good_as_grid(res.value, values)
    # the path is recorded, and it went downhill overall
    assert res.path_values[-1] < res.path_values[0]


@pytest.fixture(scope="module")
def step_size_setup():
    # least squares with noise, T = 20 steps from an informed start: an interior optimum
    # (large steps overshoot the top of the Marchenko-Pastur bulk)
    problem = dj.Problem(dj.LinearModel(0.5), dj.SquareLoss(), alpha=3.0)
    init = dj.InformedInit(0.5, 1.0)
    key = jax.random.key(3)
    objective = step_size_objective(problem, init, horizon=20, num_samples=300, key=key)
    return problem, init, key, jax.jit(objective)


def test_step_size_objective_forward_derivative(step_size_setup):
    # forward mode through the DMFT scan against central differences with the same key
    _, _, _, objective = step_size_setup
    x = float(np.log(0.05))
    g = float(jax.jit(jax.jacfwd(objective))(x))
    h = 1e-5
    fd = (float(objective(x + h)) - float(objective(x - h))) / (2 * h)
    assert abs(g / fd - 1) < 1e-5


def test_tune_step_size_matches_grid(step_size_setup):
    problem, init, key, objective = step_size_setup
    grid = np.exp(np.linspace(np.log(0.02), np.log(0.2), 17))
    _, values, i = grid_search(objective, np.log(grid))
    assert 0 < i < grid.size - 1  # an interior optimum
    res = tune_step_size(
        problem, init, horizon=20, num_samples=300, key=key, eta0=0.02, steps=30, progress=False
    )
    eta = float(jnp.exp(res.params))
    _log_grid_check(grid, values, eta)
    _as_good_as_grid(res.value, values)


def test_tune_algorithm_momentum_and_step_of_heavy_ball_match_grids(step_size_setup):
    # the same least-squares problem, heavy ball at step 0.05: its momentum (optimised as a
    # logit) has an interior optimum; then its step at the tuned momentum (log)
    problem, init, key, _ = step_size_setup
    template = dj.HeavyBall(0.05, 0.5, 20)
    obj = jax.jit(
        dj.algorithm_objective(problem, template, init, num_samples=300, key=key, field="momentum")
    )
    betas = np.linspace(0.05, 0.95, 19)
    _, values, i = grid_search(obj, np.log(betas / (1 - betas)))
    assert 0 < i < betas.size - 1
    res = dj.tune_algorithm(
        problem,
        template,
        init,
        field="momentum",
        start=0.6,
        num_samples=300,
        key=key,
        steps=30,
        progress=False,
    )
    beta = float(jax.nn.sigmoid(res.params))
    assert abs(beta - betas[i]) <= betas[1] - betas[0], (beta, betas[i])
    _as_good_as_grid(res.value, values)
    hb = dj.HeavyBall(0.05, beta, 20)
    etas = np.exp(np.linspace(np.log(0.01), np.log(0.1), 13))
    step_obj = jax.jit(dj.algorithm_objective(problem, hb, init, num_samples=300, key=key))
    _, values, i = grid_search(step_obj, np.log(etas))
    assert 0 < i < etas.size - 1
    res = tune_step_size(
        problem, init, algorithm=hb, num_samples=300, key=key, eta0=0.02, steps=30, progress=False
    )
    _log_grid_check(etas, values, float(jnp.exp(res.params)))
    _as_good_as_grid(res.value, values)
    # refusals before tracing
    with pytest.raises(ValueError, match="no field 'momentum'"):
        dj.tune_algorithm(
            problem, dj.GradientDescent(0.05, 20), init, field="momentum", num_samples=300, key=key
        )
    with pytest.raises(ValueError, match="horizon"):
        tune_step_size(problem, init, algorithm=hb, horizon=10, num_samples=300, key=key)
    with pytest.raises(ValueError, match="start"):
        dj.tune_algorithm(problem, hb, init, field="momentum", start=1.0, num_samples=300, key=key)
    with pytest.raises(ValueError, match="schedule"):
        dj.tune_algorithm(
            problem, dj.GradientDescent(jnp.full(20, 0.05), 20), init, num_samples=300, key=key
        )


def test_plot_tuning_returns_figure():
    from matplotlib.figure import Figure

    grid = np.logspace(-2, 0, 11)
    path = np.log(np.array([0.5, 0.3, 0.2, 0.25]))
    res = TuneResult(
        params=jnp.asarray(path[-1]),
        value=0.1,
        best_params=path[-1],
        best_value=0.1,
        path_params=path,
        path_values=np.array([0.3, 0.2, 0.12, 0.1]),
        path_grads=np.array([1.0, 0.5, 0.1, np.nan]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot_tuning(
            [
                {
                    "grid": grid,
                    "values": (np.log(grid) - np.log(0.25)) ** 2,
                    "result": res,
                    "name": "lam",
                    "exact": 0.25,
                }
            ]
        )
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # the panel and its colour bar
