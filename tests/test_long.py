"""Long horizons: the windowed mode against the exact mode, the hand-off to the fixed
point, and the long-horizon inputs (derivation, section 3c)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmftjax as dj

# the derivation's section 3c reference problem
PROBLEM = dj.Problem(
    dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
)
INIT = dj.InformedInit(0.5, 1.0)


def solve(steps, estimator, num=2000, replicas=2, seed=3, **kw):
    return dj.solve_dmft(
        PROBLEM,
        dj.GradientDescent(0.03, steps),
        INIT,
        num_samples=num,
        key=jax.random.key(seed),
        num_replicas=replicas,
        estimator=estimator,
        **kw,
    )


def test_windowed_is_the_exact_mode_while_the_window_holds_everything():
    # Until t reaches the window nothing is cut: the forward-tangent contractions with
    # theta*, theta^0 and the constant direction are the exact row contractions, so the
    # two modes agree to rounding on the same seeds, kernels included. (The run must be
    # longer than the window: a window covering the whole run is the exact mode itself.)
    w = 16
    exact, win = solve(40, "tangent"), solve(40, "windowed", window=w)
    assert win.info["estimator"] == "windowed" and win.info["window_ratio"] > 0
    for name in ("overlap", "norm", "error", "train_loss"):
        np.testing.assert_allclose(
            win.values[name][:w], exact.values[name][:w], rtol=1e-9, atol=1e-12
        )
    for name in ("R", "Gamma", "C"):
        np.testing.assert_allclose(
            win.kernels[name][:w, :w], exact.kernels[name][:w, :w], rtol=1e-7, atol=1e-10
        )


def test_windowed_matches_exact_beyond_the_window_within_monte_carlo_error():
    # 150 steps with a window of 40 lags: the cut is active for 110 steps. On the same
    # seeds the two modes share their Monte Carlo noise, so what is left is the
    # truncation error; it must stay below the Monte Carlo standard error of the
    # curve (which a user would otherwise read as exact).
    # The standard error of 4 replicas is itself noisy (two replica curves can cross),
    # so it is pooled over +-10 steps, where it varies smoothly.
    steps = 150
    exact = solve(steps, "tangent", replicas=4)
    win = solve(steps, "windowed", replicas=4, window=40)
    for name in ("error", "norm", "overlap", "test_error"):
        gap = np.abs(np.asarray(win.values[name] - exact.values[name]))[1:]
        var = np.asarray(exact.stderr[name])[1:] ** 2
        se = np.sqrt(np.convolve(var, np.ones(21) / 21, mode="same"))
        assert np.all(gap < se), (name, int(np.argmax(gap / se)), float(np.max(gap / se)))
    assert 0 < win.info["window_ratio"] < 1e-2


def test_too_small_a_window_warns():
    with pytest.warns(RuntimeWarning, match="larger window"):
        solve(40, "windowed", window=8, num=600)


@pytest.mark.slow
def test_handoff_flags_and_continues_the_curve_to_the_fixed_point():
    # four replicas, a hand-off at a predicted remaining change of 5% of the error: the
    # extrapolated tail must stay within 2% of the error of a run that integrates every
    # step (on the same seeds, so the two differ after the hand-off only by the
    # extrapolation and by the integrated run's own Monte Carlo wandering about its
    # limit, measured by its standard error), to the end
    steps = 400
    full = solve(steps, "windowed", num=3000, replicas=4)
    short = solve(steps, "windowed", num=3000, replicas=4, handoff=0.05)
    info = short.info
    assert info["handed_off"] and info["handoff_fixed_point_converged"]
    at = np.asarray(info["handoff_at"])
    assert np.all((at > 20) & (at < steps)), at
    assert "handed_off" not in short.values
    # Up to the hand-off the two runs are the same computation.
    first = int(at.min())
    np.testing.assert_allclose(short.error[: first + 1], full.error[: first + 1], rtol=1e-10)
    tol = 0.02 * np.asarray(full.error) + 3 * np.asarray(full.error_se)
    gap = np.abs(np.asarray(short.error - full.error))
    assert np.all(gap[first:] < tol[first:]), float(np.max(gap[first:] / tol[first:]))
    assert gap[-1] < tol[-1], (float(short.error[-1]), float(full.error[-1]))


def test_long_horizon_inputs_are_checked():
    alg = dj.GradientDescent(0.03, 10)
    with pytest.raises(ValueError, match="estimator"):
        dj.solve_dmft(
            PROBLEM, alg, INIT, num_samples=100, key=jax.random.key(0), estimator="window"
        )
    with pytest.raises(ValueError, match="window"):
        dj.solve_dmft(
            PROBLEM,
            alg,
            INIT,
            num_samples=100,
            key=jax.random.key(0),
            estimator="windowed",
            window=0,
        )
    with pytest.raises(ValueError, match="handoff"):
        dj.solve_dmft(
            PROBLEM,
            alg,
            INIT,
            num_samples=100,
            key=jax.random.key(0),
            estimator="windowed",
            handoff=-1.0,
        )


def test_windowed_matches_the_simulator_down_to_small_errors():
    # Noiseless, ridge 0.01, informed start: the error falls from 0.4 to ~3e-4 in 150
    # steps. The long-horizon DMFT must agree with the simulation at every t.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from helpers import assert_agree

    problem = dj.Problem(
        dj.PhaseRetrieval(0.0), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.01)
    )
    alg, init = dj.GradientDescent(0.03, 150), dj.InformedInit(0.8, 1.0)
    dmft = dj.solve_dmft(
        problem,
        alg,
        init,
        num_samples=5000,
        num_replicas=8,
        key=jax.random.key(11),
        estimator="windowed",
    )
    sim = dj.simulate(problem, alg, init, dim=1000, num_seeds=8, key=jax.random.key(12))
    assert float(dmft.error[-1]) < 1e-3
    assert_agree(dmft, sim, ["error", "overlap", "norm", "train_loss"])


class _SmoothCut(dj.AbstractPreprocessing):
    """A bounded preprocessing without breakpoints, `tanh(y - 1)`: the only kind for
    which a spectral start runs the exact z-tangent (every built-in bounded one has a
    breakpoint, and Gaussian integration by parts on z is used instead)."""

    def __call__(self, y):
        return jnp.tanh(jnp.asarray(y) - 1.0)

    def sup(self):
        return jnp.asarray(1.0)

    def mass_at_sup(self):
        return False


@pytest.mark.parametrize(
    "prep", [dj.MondelliMontanari(), _SmoothCut()], ids=["mondelli-montanari", "smooth"]
)
def test_windowed_spectral_slot_is_the_exact_mode_inside_the_window(prep):
    # The stationary slot of a spectral start enters the windowed mode's forward
    # z-tangent through its total derivative (h m_v); inside the window the two modes
    # must agree to rounding, so the slot's simulator check carries over.
    problem = dj.Problem(
        dj.PhaseRetrieval(0.0), dj.WirtingerLoss(), alpha=5.0, regulariser=dj.Ridge(0.01)
    )
    init = dj.SpectralInit(prep)
    kw = dict(num_samples=1200, num_replicas=2, key=jax.random.key(4))
    alg, w = dj.GradientDescent(0.02, 40), 16
    exact = dj.solve_dmft(problem, alg, init, estimator="tangent", **kw)
    win = dj.solve_dmft(problem, alg, init, estimator="windowed", window=w, **kw)
    for name in ("overlap", "norm", "error", "wrong_well"):
        np.testing.assert_allclose(
            win.values[name][:w], exact.values[name][:w], rtol=1e-9, atol=1e-12
        )


def test_an_invalid_fixed_point_refuses_the_handoff(monkeypatch):
    # the curve is never continued to a limit that Newton did not find: every step is
    # integrated instead, with a warning
    import equinox as eqx

    from dmftjax import _fixed_point

    real = _fixed_point.fixed_point

    def unconverged(*args, **kwargs):
        fp = real(*args, **kwargs)
        return eqx.tree_at(
            lambda f: (f.converged, f.residual), fp, (jnp.asarray(False), jnp.asarray(1.0))
        )

    monkeypatch.setattr(_fixed_point, "fixed_point", unconverged)
    problem = dj.Problem(dj.LinearModel(0.3), dj.SquareLoss(), alpha=3.0, regulariser=dj.Ridge(0.1))
    kw = dict(
        num_samples=400, num_replicas=2, key=jax.random.key(9), estimator="windowed", window=16
    )
    alg = dj.GradientDescent(0.2, 120)
    with pytest.warns(RuntimeWarning, match="no limit to continue"):
        short = dj.solve_dmft(problem, alg, INIT, handoff=0.05, **kw)
    assert short.info["handoff_refused"] and not short.info["handed_off"]
    full = dj.solve_dmft(problem, alg, INIT, **kw)
    np.testing.assert_allclose(short.error, full.error, rtol=1e-12)
