"""Spectral start: closed form (`spectral_theory`), thresholds, derivatives, and the
finite-d eigenvectors (`SpectralInit`, `spectral_simulation`) it must predict."""

import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import dmftjax as dj
from dmftjax._spectral_init import _draw_data

PR = dj.PhaseRetrieval


def problem(alpha, noise=0.0):
    return dj.Problem(PR(noise=noise), dj.WirtingerLoss(), alpha)


class UserClip(dj.AbstractPreprocessing):
    """A user's preprocessing: only `__call__` (default sup, no breakpoints)."""

    def __call__(self, y):
        return jnp.minimum(y, 2.5)


# --- exact limits --------------------------------------------------------------------


@pytest.mark.parametrize("prep", [dj.LuoAlghamdiLu(), dj.MondelliMontanari()])
def test_threshold_one_half_noiseless(prep):
    # Luo-Alghamdi-Lu and Mondelli-Montanari (real): weak recovery iff alpha > 1/2.
    alpha_c = dj.weak_recovery_threshold(PR(), prep)
    assert abs(alpha_c - 0.5) < 1e-3
    assert not bool(dj.spectral_theory(problem(0.49), prep).has_outlier)
    assert bool(dj.spectral_theory(problem(0.51), prep).has_outlier)


def test_trimming_threshold():
    # The derivation quotes "trimming at tau = 9: threshold near alpha = 1.63".
    alpha_c = dj.weak_recovery_threshold(PR(), dj.Trimmed(9.0))
    assert abs(alpha_c - 1.63) < 0.01
    below = dj.spectral_theory(problem(0.98 * alpha_c), dj.Trimmed(9.0))
    above = dj.spectral_theory(problem(1.02 * alpha_c), dj.Trimmed(9.0))
    assert not bool(below.has_outlier) and float(below.cosine2) == 0.0
    assert float(below.top_eigenvalue) == float(below.bulk_edge)
    assert bool(above.has_outlier) and float(above.cosine2) > 0
    assert float(above.top_eigenvalue) > float(above.bulk_edge)


def test_identity_carries_no_overlap():
    with pytest.warns(RuntimeWarning, match="unbounded"):
        th = dj.spectral_theory(problem(3.0), dj.Identity())
    assert not bool(th.has_outlier)
    assert float(th.cosine2) == 0.0 and math.isinf(float(th.top_eigenvalue))
    assert "localises" in th.explanation


def test_mondelli_montanari_unbounded_below_one_half():
    # sqrt(2 alpha) < 1: the denominator vanishes at y = 1 - sqrt(2 alpha) > 0.
    assert math.isinf(float(dj.MondelliMontanari(0.3).sup()))
    assert float(dj.MondelliMontanari(2.0).sup()) == 1.0


def _quad(f, breaks=()):
    """E f(G) for even f, G ~ N(0, 1), by adaptive quadrature in g = |G| (independent
    of the library's graded Gauss-Legendre rule)."""
    pts = sorted(b for b in breaks if 0 < b < 12)
    edges = [0.0, *pts, 12.0]
    dens = lambda g: 2 * np.exp(-g * g / 2) / np.sqrt(2 * np.pi)  # noqa: E731
    return sum(
        integrate.quad(lambda g: f(g) * dens(g), a, b, limit=200, epsabs=1e-14, epsrel=1e-13)[0]
        for a, b in zip(edges[:-1], edges[1:])
    )


@pytest.mark.parametrize(
    "prep, tfun, breaks, alpha",
    [
        (dj.Trimmed(9.0), lambda y: y * (y <= 9.0), (3.0,), 3.0),
        (dj.MondelliMontanari(2.0), lambda y: (y - 1) / (y + 1), (), 2.0),
    ],
)
def test_slot_equations_of_section_3b(prep, tfun, breaks, alpha):
    # With R_vv = 1/lam_star, m_v = sqrt(cos^2) and lam1 = top eigenvalue of D, the
    # stationary slot's (a), (b), (c) hold, checked with scipy's adaptive quadrature.
    th = dj.spectral_theory(problem(alpha), prep)
    r, m2, lam1 = float(th.R_vv), float(th.cosine2), float(th.top_eigenvalue)
    assert r == pytest.approx(1 / float(th.lam_star), rel=1e-14)
    tt = lambda g: tfun(g * g)  # noqa: E731
    big_f = lambda g: tt(g) / (1 - r * tt(g))  # noqa: E731
    a_rhs = alpha * r * _quad(lambda g: tt(g) * (g * g - 1) / (1 - r * tt(g)), breaks)
    ef2 = _quad(lambda g: big_f(g) ** 2, breaks)
    ef2z2 = _quad(lambda g: big_f(g) ** 2 * g * g, breaks)
    b_rhs = (1 - alpha * r**2 * ef2) / (1 - alpha * r**2 * ef2 + alpha * r**2 * ef2z2)
    c_rhs = 1 / r + alpha * _quad(big_f, breaks)
    assert a_rhs == pytest.approx(1.0, abs=1e-9)
    assert b_rhs == pytest.approx(m2, abs=1e-9)
    assert c_rhs == pytest.approx(lam1, rel=1e-9)


def test_user_preprocessing_defaults():
    user = UserClip()
    assert float(user.sup()) == 2.5 and user.mass_at_sup() is None
    assert user.breakpoints() == () and user.specialise(3.0) is user
    # Without breakpoints the kink at y = 2.5 costs some accuracy, not much.
    a = dj.spectral_theory(problem(2.5), user)
    b = dj.spectral_theory(problem(2.5), dj.Clipped(2.5))
    assert float(a.cosine2) == pytest.approx(float(b.cosine2), abs=2e-3)
    assert float(a.top_eigenvalue) == pytest.approx(float(b.top_eigenvalue), rel=1e-3)


class SquareLink(dj.AbstractModel):
    """Phase retrieval written as a user's model: the generic (G, eps) quadrature."""

    noise: float = 0.0
    even: ClassVar[bool] = True
    smooth: ClassVar[bool] = True

    def link(self, z, eps):
        return z**2 + self.noise * eps


def test_generic_model_quadrature_matches_phase_retrieval():
    # Tensor rule in (G, eps) without breakpoints: fine for a smooth T.
    for noise in (0.0, 0.3):
        a = dj.spectral_theory(problem(2.0, noise), dj.MondelliMontanari())
        b = dj.spectral_theory(
            dj.Problem(SquareLink(noise), dj.WirtingerLoss(), 2.0), dj.MondelliMontanari()
        )
        assert float(b.cosine2) == pytest.approx(float(a.cosine2), abs=1e-3 if noise else 1e-9)
        assert float(b.top_eigenvalue) == pytest.approx(float(a.top_eigenvalue), rel=1e-3)


# --- derivatives -----------------------------------------------------------------------


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_grad_cosine2_against_finite_differences(noise):
    def cos2(alpha, tau):
        return dj.spectral_theory(problem(alpha, noise), dj.Trimmed(tau)).cosine2

    alpha, tau, h = 3.0, 7.0, 1e-4
    g_alpha, g_tau = jax.grad(cos2, argnums=(0, 1))(alpha, tau)
    fd_alpha = (cos2(alpha + h, tau) - cos2(alpha - h, tau)) / (2 * h)
    fd_tau = (cos2(alpha, tau + h) - cos2(alpha, tau - h)) / (2 * h)
    assert abs(g_alpha - fd_alpha) < 1e-3 * abs(fd_alpha)
    assert abs(g_tau - fd_tau) < 1e-3 * abs(fd_tau)


# --- the simulator ---------------------------------------------------------------------

# Theory against measured eigenvectors at d = 1000. Tolerance: 4 standard errors of the
# seed mean (the theory's own error is below 1e-12) plus a finite-size allowance
# 0.25/sqrt(d) on the squared cosine and 0.25 |lam1|/sqrt(d) on the top eigenvalue.
# Why that allowance: one seed's cosine^2 spreads by about 0.9/sqrt(d) (measured,
# d = 500..4000), and away from the threshold the bias of the mean is a small fraction
# of that (measured |mean - theory| <= 0.005 for Mondelli-Montanari at alpha = 2,
# Trimmed(9) at 3 and clipped Luo-Alghamdi-Lu at 2 with noise 0.3, d = 500..4000, 12-48
# seeds); 0.25/sqrt(d) = 0.008 at d = 1000. Every alpha is at least 1.8 times its
# threshold: closer to it the BBP window (width ~ d^{-1/3}) makes the bias O(1) (e.g.
# Trimmed(9) at alpha = 2 = 1.2 thresholds: 0.15 measured against 0.09 at d = 1000).
# Two alphas only (2 and 3), so that the data and the eigensolver compile twice in all.
DIM, SEEDS = 1000, 10


@pytest.mark.parametrize(
    "prep, alpha",
    [
        (dj.Trimmed(9.0), 3.0),
        (dj.Clipped(3.0), 2.0),
        (dj.LuoAlghamdiLu(clip=-5.0), 2.0),
        (dj.MondelliMontanari(), 3.0),
        (UserClip(), 2.0),
    ],
    ids=["trimmed", "clipped", "luo-alghamdi-lu", "mondelli-montanari", "user"],
)
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_theory_matches_simulated_eigenvectors(prep, alpha, noise):
    p = problem(alpha, noise)
    th = dj.spectral_theory(p, prep)
    assert bool(th.has_outlier)
    sim = dj.spectral_simulation(
        p, prep, dim=DIM, num_seeds=SEEDS, key=jax.random.key(17), method="lanczos"
    )
    assert sim.converged
    tol_c = 4 * sim.cosine2_stderr + 0.25 / math.sqrt(DIM)
    tol_l = 4 * sim.top_eigenvalue_stderr + 0.25 * abs(float(th.top_eigenvalue)) / math.sqrt(DIM)
    assert abs(sim.cosine2 - float(th.cosine2)) < tol_c, (sim.cosine2, float(th.cosine2), tol_c)
    assert abs(sim.top_eigenvalue - float(th.top_eigenvalue)) < tol_l


def test_r_vv_is_the_bulk_stieltjes_transform(key):
    # R_vv = lim (1/d) sum_{j >= 2} 1/(lam1 - lam_j(D)), evaluated at the measured lam1.
    p, prep, dim = problem(3.0), dj.MondelliMontanari(), 600
    th = dj.spectral_theory(p, prep)
    t_fn = prep.specialise(3.0)
    vals = []
    for k in jax.random.split(key, 3):
        _, a, y = _draw_data(p, dim, 3 * dim, k)
        a, t = np.asarray(a), np.asarray(jax.vmap(t_fn)(y))
        ev = np.linalg.eigvalsh(a.T @ (t[:, None] * a))
        vals.append(float(np.sum(1.0 / (ev[-1] - ev[:-1])) / dim))
    # The spread of lam1 (~0.05) moves s(lam1) by |s'| * 0.05 ~ 0.02: a 0.03 tolerance.
    assert abs(np.mean(vals) - float(th.R_vv)) < 0.03


def test_dense_and_lanczos_agree(key):
    # Unclipped Luo-Alghamdi-Lu: a spectrum reaching -1e6, the hard case for Lanczos.
    for prep, noise in [(dj.LuoAlghamdiLu(), 0.0), (dj.Trimmed(9.0), 0.3)]:
        p = problem(2.0, noise)
        _, a, y = _draw_data(p, 200, 400, key)
        t = jax.vmap(prep)(y)
        l1, x1, _ = dj.top_eigenpair(a, t, key=key, method="dense")
        l2, x2, info = dj.top_eigenpair(a, t, key=key, method="lanczos")
        assert bool(info.converged)
        assert float(l2) == pytest.approx(float(l1), rel=1e-9)
        assert abs(float(x1 @ x2)) > 1 - 1e-9


def test_simulator_start_under_vmap(key):
    p, dim = problem(3.0), 200
    init = dj.SpectralInit(dj.MondelliMontanari(), method="dense")

    def start(k):
        k1, k2 = jax.random.split(k)
        theta_star, a, y = _draw_data(p, dim, 3 * dim, k1)
        theta0 = init.simulator_start(p, theta_star, a, y, key=k2)
        return theta0, theta_star, jnp.sqrt(jnp.mean(y))

    theta0, theta_star, scale = eqx.filter_jit(jax.vmap(start))(jax.random.split(key, 3))
    np.testing.assert_allclose(jnp.sum(theta0**2, axis=1) / dim, scale**2, rtol=1e-10)
    assert bool(jnp.all(jnp.sum(theta0 * theta_star, axis=1) > 0))
    fixed = dj.SpectralInit(dj.MondelliMontanari(), scale=2.0, method="dense")
    _, a, y = _draw_data(p, dim, 3 * dim, key)
    theta0 = fixed.simulator_start(p, theta_star[0], a, y, key=key)
    assert float(theta0 @ theta0) / dim == pytest.approx(4.0, rel=1e-10)


# --- bad inputs ----------------------------------------------------------------------


def test_bad_inputs():
    p = problem(2.0)
    with pytest.raises(ValueError, match="AbstractPreprocessing"):
        dj.spectral_theory(p, lambda y: y)
    with pytest.raises(ValueError, match="Problem"):
        dj.spectral_theory("problem", dj.Trimmed(9.0))
    with pytest.raises(ValueError, match="alpha"):
        dj.spectral_theory(eqx.tree_at(lambda q: q.alpha, p, -1.0), dj.Trimmed(9.0))
    with pytest.raises(ValueError, match="alpha"):
        dj.spectral_theory(eqx.tree_at(lambda q: q.alpha, p, float("nan")), dj.Trimmed(9.0))
    with pytest.raises(ValueError):
        problem(0.0)
    with pytest.raises(ValueError, match="NaN"):
        dj.Trimmed(float("nan"))
    with pytest.raises(ValueError):
        dj.Clipped(-1.0)
    with pytest.raises(ValueError, match="clip"):
        dj.LuoAlghamdiLu(clip=1.5)
    with pytest.raises(ValueError):
        dj.MondelliMontanari(alpha=0.0)
    with pytest.raises(ValueError, match="specialise"):
        dj.MondelliMontanari()(jnp.ones(3))
    with pytest.raises(ValueError, match="AbstractPreprocessing"):
        dj.weak_recovery_threshold(PR(), "trimmed")
    with pytest.raises(ValueError):
        dj.weak_recovery_threshold(PR(), dj.Trimmed(9.0), bracket=(0.0, 10.0))
    with pytest.raises(ValueError, match="AbstractPreprocessing"):
        dj.SpectralInit("trimmed")
    with pytest.raises(ValueError, match="method"):
        dj.SpectralInit(dj.Trimmed(9.0), method="power")
    with pytest.raises(ValueError, match="scale"):
        dj.SpectralInit(dj.Trimmed(9.0), scale=float("nan"))
    with pytest.raises(ValueError, match="dim"):
        dj.spectral_simulation(p, dj.Trimmed(9.0), dim=1, num_seeds=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_seeds"):
        dj.spectral_simulation(p, dj.Trimmed(9.0), dim=10, num_seeds=1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="key"):
        dj.spectral_simulation(p, dj.Trimmed(9.0), dim=10, num_seeds=2, key=None)
    with pytest.raises(ValueError, match="method"):
        dj.top_eigenpair(jnp.ones((4, 2)), jnp.ones(4), key=jax.random.key(0), method="qr")


def test_top_eigenpair_bad_inputs():
    import jax.numpy as jnp

    from dmftjax._spectral_init import top_eigenpair

    a, t = jnp.ones((6, 3)), jnp.ones(6)
    for kwargs in (
        dict(key=None),
        dict(key=3),
        dict(chunk=0),
        dict(steps=1),
        dict(max_restarts=0),
        dict(tol=0.0),
        dict(method="qr"),
    ):
        args = dict(key=jax.random.key(0))
        args.update(kwargs)
        with pytest.raises(ValueError):
            top_eigenpair(a, t, **args)
    with pytest.raises(ValueError):
        top_eigenpair(a, jnp.ones(5), key=jax.random.key(0))
