r"""Closed-form (d = infinity) theory of the spectral start (Lu-Li; Mondelli-Montanari).

Conventions (docs/equations.md#the-setting): rows `a_i ~ N(0, I_d / d)`, `n = alpha d`,
`D = sum_i T(y_i) a_i a_i^T`. The papers use `x_i = sqrt(d) a_i ~ N(0, I_d)`,
`delta = n/d = alpha` and `D_n = (1/n) sum_i T(y_i) x_i x_i^T = D / alpha`. With
`Z = T(Y)`, `Y = f(G, eps)`, `G ~ N(0, 1)`, `tau = sup supp Z`, `k(lam) = Z/(lam - Z)`:

    psi(lam)  = lam (1/alpha + E k)          psi'(lam) = 1/alpha - E k^2
    phi(lam)  = lam E[k G^2]                 phi'(lam) = -E[k^2 G^2]
    lam_bar   = argmin_{lam > tau} psi        (psi convex on (tau, inf))
    lam_star  = the root of psi = phi on (lam_bar, inf), i.e. of
                H(lam) = E[k (G^2 - 1)] - 1/alpha = (phi - psi)/lam

`phi` decreases and `psi` increases on `(lam_bar, inf)`, so an outlier exists iff
`H(lam_bar) > 0`, and then the root is unique. Squared cosine
`psi'(lam*) / (psi'(lam*) - phi'(lam*))`; top eigenvalue of `D`: `alpha psi(lam*)`;
bulk edge of `D`: `alpha psi(lam_bar)` (the papers' values for `D_n`, times `alpha`).

Relation to the stationary slot of docs/equations.md#stationary-slot (verified in the tests
to 1e-10):
`R_vv = 1/lam*` (the papers' convention), `m_v = sqrt(cos^2)`, `lam1 = alpha psi(lam*)`
solve (a), (b), (c) there. `R_vv` is also the Stieltjes transform of the bulk of `D`
at its top eigenvalue, `lim (1/d) sum_{j >= 2} 1/(lam1 - lam_j(D))` (this is the
generalised Marchenko-Pastur equation `1/s = lam1 - alpha E[T/(1 - s T)]`, i.e. (c)).

Quadrature. Every expectation is `E[k(Z)]` or `E[k(Z) G^2]`, a 1-d integral once the
law of `Y` is used:

- noiseless phase retrieval: in `g = |G|` (`y = g^2`), composite Gauss-Legendre on
  `[0, 12]` with panel ends at `sqrt(b)` for every breakpoint `b` of `T`, graded
  geometrically towards them (ratio 1/3, down to 1e-12);
- noisy phase retrieval: in `y`, with the density `p(y)` of `G^2 + sigma eps` and
  `E[G^2 1{Y in dy}]` computed once per node by a 48-point rule, the same graded
  panels at the breakpoints and at `y = 0`;
- any other model: a tensor rule in `(G, eps)` (composite Gauss-Legendre in `G`,
  Gauss-Hermite in `eps`) without breakpoints, accurate for smooth `T` only.

The graded panels are what keep `lam_bar - tau > 0` (trimming, clipping: density or
atom at `tau`) from producing a near-pole inside a panel: a naive Gauss-Hermite rule in
`G` puts few nodes where `Z` is near `tau` and gives a wrong `lam_bar` and spurious
overlaps. The nodes move with the breakpoints, so derivatives in a threshold `tau` are
exact derivatives of the quadrature (Leibniz' rule included).

References: Lu and Li (2017); Mondelli and Montanari (2018), Lemma 2 and Theorem 1;
Luo, Alghamdi and Lu (2019).
"""

from __future__ import annotations

import functools
import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Bool, Float

from ._models import AbstractBinaryModel, AbstractModel, PhaseRetrieval
from ._preprocess import AbstractPreprocessing, supremum
from ._problem import Problem, check_problem
from ._validate import as_arrays, check_positive, check_precision, is_concrete

# Quadrature settings.
_PANEL_NODES = 12
_GRADE_LEVELS = 24
_GRADE_RATIO = 1.0 / 3.0
_G_MAX = 12.0
_WINDOW_NODES = 48
_Z_FLOOR = -1e150

_UNBOUNDED = (
    "T(Y) is unbounded above (tau = inf): the top eigenvalues of D come from the largest "
    "T(y_i), the top eigenvector localises on those rows and its overlap with theta* "
    "vanishes as d grows at any fixed alpha (untrimmed, the spectral method needs n of "
    "order d log d). Use a bounded preprocessing such as Trimmed, Clipped, LuoAlghamdiLu "
    "or MondelliMontanari."
)


class SpectralTheory(eqx.Module):
    r"""The `d = infinity` spectral start.

    - `cosine2`: squared cosine between the top eigenvector of `D` and `theta*`
      (0 without an outlier).
    - `top_eigenvalue`, `bulk_edge`: of `D = sum_i T(y_i) a_i a_i^T`, `a_i ~ N(0, I/d)`
      (= `alpha` times the papers' values for `D_n`).
    - `has_outlier`: whether the top eigenvalue separates from the bulk.
    - `lam_star`, `lam_bar`, `tau`: the papers' parameters (arguments of `psi`, `phi`
      in the `D_n` convention, not eigenvalues); without an outlier `lam_star = lam_bar`.
    - `R_vv = 1/lam_star`, `m_v = sqrt(cosine2)`: the slot quantities of
      docs/equations.md#stationary-slot.
    - `alpha`: the sample ratio.
    - `explanation` (property): why there is no overlap, or `""`.
    """

    cosine2: Float[Array, ""]
    top_eigenvalue: Float[Array, ""]
    bulk_edge: Float[Array, ""]
    has_outlier: Bool[Array, ""]
    lam_star: Float[Array, ""]
    lam_bar: Float[Array, ""]
    R_vv: Float[Array, ""]
    m_v: Float[Array, ""]
    tau: Float[Array, ""]
    alpha: Float[Array, ""]

    @property
    def explanation(self) -> str:
        if not math.isfinite(float(self.tau)):
            return _UNBOUNDED
        if not bool(self.has_outlier):
            return (
                "below the weak-recovery threshold: phi(lam_bar) <= psi(lam_bar), the top "
                "eigenvalue sticks to the bulk edge and the squared cosine tends to 0"
            )
        return ""


# ---------------------------------------------------------------------------------------
# Quadrature rules: E[k(Z)] = sum(wp * k(z)), E[k(Z) G^2] = sum(wm * k(z)).


class _Rule(eqx.Module):
    y: Array
    wp: Array
    wm: Array


@functools.lru_cache(maxsize=8)
def _legendre(n: int):
    x, w = np.polynomial.legendre.leggauss(n)
    return x, w


def _panels(points, n: int = _PANEL_NODES):
    """Composite Gauss-Legendre on the panels between the sorted `points`."""
    x, w = _legendre(n)
    p = jnp.sort(points)
    lo, hi = p[:-1], p[1:]
    half = 0.5 * (hi - lo)
    nodes = 0.5 * (hi + lo)[:, None] + half[:, None] * x
    weights = half[:, None] * w
    return nodes.ravel(), weights.ravel()


def _graded(b, h: float, lo: float | Array, hi: float | Array):
    """Panel ends at `b` and `b -+ h r^j` (j < levels), clamped to `[lo, hi]`."""
    steps = h * _GRADE_RATIO ** np.arange(_GRADE_LEVELS)
    pts = jnp.concatenate([b - steps, jnp.reshape(b, (1,)), b + steps[::-1]])
    return jnp.clip(pts, lo, hi)


def _phi(x):
    return jnp.exp(-0.5 * x**2) / jnp.sqrt(2 * jnp.pi)


def _safe_sqrt(x):
    """`sqrt(max(x, 0))` with a finite derivative (zero) where `x <= 0`."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def _noiseless(model) -> bool:
    if not isinstance(model, PhaseRetrieval):
        return False
    return is_concrete(model.noise) and float(model.noise) == 0.0


def _rule(model: AbstractModel, breakpoints: tuple, noiseless: bool) -> _Rule:
    if isinstance(model, AbstractBinaryModel):
        # the two labels integrated exactly: weights P(y = +-1 | G) on a rule in G
        # (a declared jump of the law is a panel end: each panel's integrand is smooth)
        jumps = [jnp.clip(jnp.asarray(b, dtype=float), -10.0, 10.0) for b in model.breakpoints()]
        g, wg = _panels(
            jnp.concatenate(
                [jnp.arange(-10.0, 10.001, 0.25)] + [jnp.reshape(b, (1,)) for b in jumps]
            )
        )
        wz = wg * _phi(g)
        p1 = jax.vmap(model.prob_plus)(g)
        wp = jnp.concatenate([wz * p1, wz * (1.0 - p1)])
        y = jnp.concatenate([jnp.ones_like(g), -jnp.ones_like(g)])
        return _Rule(y=y, wp=wp, wm=wp * jnp.concatenate([g, g]) ** 2)
    if isinstance(model, PhaseRetrieval) and noiseless:
        pts = [jnp.arange(0.0, _G_MAX + 0.25, 0.5)]
        for b in breakpoints:
            gb = _safe_sqrt(jnp.minimum(jnp.asarray(b, dtype=float), _G_MAX**2))
            pts.append(_graded(gb, 0.5, 0.0, _G_MAX))
        g, w = _panels(jnp.concatenate(pts))
        wp = 2.0 * _phi(g) * w
        return _Rule(y=g**2, wp=wp, wm=wp * g**2)
    if isinstance(model, PhaseRetrieval):
        sigma = jnp.asarray(model.noise, dtype=float)
        ylo, yhi = -10.0 * sigma, 80.0 + 10.0 * sigma
        pts = [jnp.linspace(ylo, yhi, 91), _graded(jnp.asarray(0.0), 0.5, ylo, yhi)]
        for b in breakpoints:
            pts.append(_graded(jnp.asarray(b, dtype=float), 0.5, ylo, yhi))
        y, w = _panels(jnp.concatenate(pts))
        p, m = jax.vmap(lambda yy: _noisy_density(yy, sigma))(y)
        return _Rule(y=y, wp=p * w, wm=m * w)
    # Generic model: tensor rule in (G, eps), no breakpoints.
    g, wg = _panels(jnp.arange(-10.0, 10.001, 0.25))
    e, we = np.polynomial.hermite_e.hermegauss(40)
    we = we / we.sum()
    gg, ee = jnp.meshgrid(g, jnp.asarray(e), indexing="ij")
    ww = (wg * _phi(g))[:, None] * jnp.asarray(we)[None, :]
    y = jax.vmap(model.link)(gg.ravel(), ee.ravel())
    wp = ww.ravel()
    return _Rule(y=y, wp=wp, wm=wp * gg.ravel() ** 2)


def _noisy_density(y, sigma):
    """`p(y)` and `E[G^2; Y in dy]/dy` for `Y = G^2 + sigma eps`, by Gauss-Legendre in
    `g` over the window `g^2 in [y - 8 sigma, y + 8 sigma]` (both integrands smooth)."""
    x, w = _legendre(_WINDOW_NODES)
    glo = _safe_sqrt(y - 8.0 * sigma)
    ghi = _safe_sqrt(y + 8.0 * sigma)
    half = 0.5 * (ghi - glo)
    g = 0.5 * (ghi + glo) + half * x
    f = 2.0 * _phi(g) * _phi((y - g**2) / sigma) / sigma * half * w
    return jnp.sum(f), jnp.sum(f * g**2)


# ---------------------------------------------------------------------------------------
# The closed form.


class _Data(eqx.Module):
    z: Array
    wp: Array
    wm: Array
    inv_alpha: Array


def _k(z, lam):
    return z / (lam - z)


def _e2(d: _Data, lam):
    return jnp.sum(d.wp * _k(d.z, lam) ** 2)


def _h(d: _Data, lam):
    return jnp.sum((d.wm - d.wp) * _k(d.z, lam)) - d.inv_alpha


def _psi(d: _Data, lam):
    return lam * (d.inv_alpha + jnp.sum(d.wp * _k(d.z, lam)))


def _dpsi(d: _Data, lam):
    return d.inv_alpha - _e2(d, lam)


def _dphi(d: _Data, lam):
    return -jnp.sum(d.wm * _k(d.z, lam) ** 2)


def _expand(f, lo, start, sign):
    """Smallest `lo + start 4^j` (j < 60) where `sign * f` is positive."""

    def cond(c):
        j, x = c
        return (j < 60) & ~(sign * f(x) > 0)

    def body(c):
        j, x = c
        return j + 1, lo + 4.0 * (x - lo)

    return jax.lax.while_loop(cond, body, (0, lo + start))[1]


# ignores: optimistix's `norm` (an eqx.AbstractVar, a ClassVar here) reads as a field to mypy
_BISECT: optx.Bisection = optx.Bisection(  # type: ignore[call-arg]
    rtol=1e-13, atol=1e-13, flip=False
)
_BISECT_FLIP: optx.Bisection = optx.Bisection(  # type: ignore[call-arg]
    rtol=1e-13, atol=1e-13, flip=True
)


def _root(fn, solver, args, lower, upper):
    lower = jax.lax.stop_gradient(lower)
    upper = jax.lax.stop_gradient(upper)
    sol = optx.root_find(
        fn,
        solver,
        0.5 * (lower + upper),
        args,
        options=dict(lower=lower, upper=upper),
        max_steps=200,
        throw=False,
    )
    return sol.value


def _lam_bar(d: _Data, tau, mass_at_sup):
    """`argmin_{lam > tau} psi`; `tau` itself when `psi' > 0` on all of `(tau, inf)`."""
    tau = jnp.asarray(tau, dtype=d.z.dtype)
    at_tau = jnp.where(d.z < tau, d.wp * _k(d.z, tau) ** 2, jnp.where(d.wp > 0, jnp.inf, 0.0))
    need = jnp.sum(at_tau) > d.inv_alpha
    if mass_at_sup:
        need = jnp.asarray(True)
    scale = jnp.maximum(1.0, jnp.abs(tau))
    x_lo = jnp.log(1e-12 * scale)
    x_hi = jnp.log(_expand(lambda lam: _dpsi(d, lam), tau, scale, 1.0) - tau)
    x_ref = jax.lax.stop_gradient(0.5 * (x_lo + x_hi))

    def fn(x, args):
        dd, tt, nd = args
        return jnp.where(nd, _dpsi(dd, tt + jnp.exp(x)), x - x_ref)

    x = _root(fn, _BISECT, (d, tau, need), x_lo, x_hi)
    return jnp.where(need, tau + jnp.exp(x), tau)


def _lam_star(d: _Data, lam_bar, has_outlier):
    scale = jnp.maximum(1.0, jnp.abs(lam_bar))
    hi = _expand(lambda lam: _h(d, lam), lam_bar, scale, -1.0)
    ref = jax.lax.stop_gradient(0.5 * (lam_bar + hi))

    def fn(lam, args):
        dd, ho = args
        return jnp.where(ho, _h(dd, lam), ref - lam)

    return _root(fn, _BISECT_FLIP, (d, has_outlier), lam_bar, hi)


def _prepare(model, prep, alpha, noiseless, support):
    prep = prep.specialise(alpha)
    rule = _rule(model, tuple(prep.breakpoints()), noiseless)
    z = jnp.maximum(jax.vmap(prep)(rule.y), _Z_FLOOR)
    data = _Data(z=z, wp=rule.wp, wm=rule.wm, inv_alpha=1.0 / jnp.asarray(alpha, dtype=float))
    # `support` is the labels' support, or (for a preprocessing whose supremum was
    # computed before tracing) `("tau", value)`
    tau = support[1] if support[0] == "tau" else supremum(prep, support)
    tau = jnp.asarray(tau, dtype=z.dtype)
    bounded = jnp.isfinite(tau)
    zmax = jnp.max(jnp.where(rule.wp > 0, z, -jnp.inf))
    # A numerically estimated sup may sit just below the largest value on the nodes.
    tau_eff = jnp.where(bounded, jnp.maximum(tau, zmax), zmax + 1.0)
    return prep, data, tau_eff, bounded


def _theory_core(model, prep, alpha, noiseless: bool, support: tuple) -> SpectralTheory:
    prep, d, tau, bounded = _prepare(model, prep, alpha, noiseless, support)
    lam_bar = _lam_bar(d, tau, prep.mass_at_sup())
    has = bounded & (_h(d, lam_bar) > 0)
    lam_star = jnp.where(has, _lam_star(d, lam_bar, has), lam_bar)
    dpsi, dphi = _dpsi(d, lam_star), _dphi(d, lam_star)
    cos2 = jnp.where(has, dpsi / (dpsi - dphi), 0.0)
    alpha = jnp.asarray(alpha, dtype=float)
    inf = jnp.asarray(jnp.inf)
    return SpectralTheory(
        cosine2=cos2,
        top_eigenvalue=jnp.where(bounded, alpha * _psi(d, lam_star), inf),
        bulk_edge=jnp.where(bounded, alpha * _psi(d, lam_bar), inf),
        has_outlier=has,
        lam_star=jnp.where(bounded, lam_star, inf),
        lam_bar=jnp.where(bounded, lam_bar, inf),
        R_vv=jnp.where(bounded, 1.0 / lam_star, 0.0),
        m_v=jnp.sqrt(cos2),
        tau=jnp.where(bounded, tau, inf),
        alpha=alpha,
    )


def _margin_core(model, prep, log_alpha, noiseless: bool, support: tuple):
    """`H(lam_bar)` at `alpha = exp(log_alpha)`: positive iff there is an outlier."""
    alpha = jnp.exp(log_alpha)
    prep, d, tau, bounded = _prepare(model, prep, alpha, noiseless, support)
    lam_bar = _lam_bar(d, tau, prep.mass_at_sup())
    return jnp.where(bounded, _h(d, lam_bar), -d.inv_alpha)


_theory_jit = eqx.filter_jit(_theory_core)
_margin_jit = eqx.filter_jit(_margin_core)


def _check_preprocessing(preprocessing):
    if not isinstance(preprocessing, AbstractPreprocessing):
        raise ValueError(
            "preprocessing must be a dmftjax AbstractPreprocessing (e.g. Trimmed(9.0), "
            f"LuoAlghamdiLu()), got {type(preprocessing).__name__}"
        )


def spectral_theory(problem: Problem, preprocessing: AbstractPreprocessing) -> SpectralTheory:
    r"""The `d = infinity` squared cosine and top eigenvalue of the spectral start
    `D = sum_i T(y_i) a_i a_i^T` (see the module docstring for the equations).

    **Arguments:**

    - `problem`: a `Problem` (only `model` and `alpha` are used).
    - `preprocessing`: an `AbstractPreprocessing` `T`.

    **Returns:** a `SpectralTheory`. Differentiable (`jax.grad`) in `alpha`, the model's
    noise and the preprocessing's parameters where an outlier exists: `lam_star` and
    `lam_bar` come from `optimistix.root_find` with the implicit adjoint. An unbounded
    `T` (e.g. `Identity`) gives `has_outlier = False`, infinite eigenvalues, a
    `RuntimeWarning` and an `explanation`.

    References: Mondelli and Montanari (2018), Lemma 2; Lu and Li (2017).
    """
    check_problem(problem)
    _check_preprocessing(preprocessing)
    check_positive("alpha", problem.alpha)
    support: tuple[float, float] | tuple[str, float] = label_support(problem.model)
    tau = supremum(preprocessing.specialise(problem.alpha), support)
    if is_concrete(tau) and type(preprocessing).sup is AbstractPreprocessing.sup:
        support = ("tau", float(tau))  # the numerical supremum, computed once, concretely
    if is_concrete(tau) and not math.isfinite(float(tau)):
        warnings.warn(_UNBOUNDED, RuntimeWarning, stacklevel=2)
        inf, zero = jnp.asarray(jnp.inf), jnp.asarray(0.0)
        return SpectralTheory(
            cosine2=zero,
            top_eigenvalue=inf,
            bulk_edge=inf,
            has_outlier=jnp.asarray(False),
            lam_star=inf,
            lam_bar=inf,
            R_vv=zero,
            m_v=zero,
            tau=inf,
            alpha=jnp.asarray(problem.alpha, dtype=float),
        )
    noiseless = _noiseless(problem.model)
    return _theory_jit(
        as_arrays(problem.model),
        as_arrays(preprocessing),
        jnp.asarray(problem.alpha, dtype=float),
        noiseless,
        support,
    )


def label_support(model: AbstractModel) -> tuple[float, float]:
    """`model.label_support()` as two floats; `(-inf, inf)` (the conservative answer)
    when the model's fields are traced and its support cannot be evaluated."""
    try:
        lo, hi = model.label_support()
        return float(lo), float(hi)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return -math.inf, math.inf


def weak_recovery_threshold(
    model: AbstractModel,
    preprocessing: AbstractPreprocessing,
    *,
    bracket: tuple[float, float] = (1e-3, 1e3),
) -> float:
    r"""The smallest sample ratio `alpha` at which the spectral matrix `D` has an
    outlier (and its top eigenvector a non-zero overlap with `theta*`).

    Bisection in `log alpha` (`optimistix.Bisection`) on `H(lam_bar) = phi(lam_bar)/lam_bar
    - psi(lam_bar)/lam_bar`, which changes sign exactly there.
    `MondelliMontanari(alpha=None)` is re-tuned at every `alpha` (its threshold is 1/2).

    **Arguments:**

    - `model`: the single-index model (e.g. `PhaseRetrieval()`).
    - `preprocessing`: the preprocessing `T`.
    - `bracket`: the range of `alpha` searched.

    **Returns:** the threshold as a float; `inf` (with a warning) when there is no
    outlier at `bracket[1]`. An outlier already at `bracket[0]` raises a ValueError
    (the threshold lies below the bracket: widen it).
    """
    check_precision()
    if not isinstance(model, AbstractModel):
        raise ValueError(f"model must be an AbstractModel, got {type(model).__name__}")
    _check_preprocessing(preprocessing)
    lo, hi = bracket
    check_positive("bracket[0]", lo)
    check_positive("bracket[1]", hi)
    if not lo < hi:
        raise ValueError(f"bracket must be increasing, got {bracket}")
    noiseless = _noiseless(model)
    support = label_support(model)
    m, p = as_arrays(model), as_arrays(preprocessing)
    x_lo, x_hi = jnp.log(jnp.asarray(lo, dtype=float)), jnp.log(jnp.asarray(hi, dtype=float))
    if not float(_margin_jit(m, p, x_hi, noiseless, support)) > 0:
        warnings.warn(
            f"no outlier for alpha <= {hi}: threshold reported as inf", RuntimeWarning, stacklevel=2
        )
        return math.inf
    if float(_margin_jit(m, p, x_lo, noiseless, support)) > 0:
        raise ValueError(
            f"an outlier exists already at alpha = {lo}, the lower end of the bracket: the "
            f"threshold lies below it; pass a wider bracket=(lower, {hi})"
        )
    return float(jnp.exp(_threshold_jit(m, p, x_lo, x_hi, noiseless, support)))


@eqx.filter_jit
def _threshold_jit(model, prep, x_lo, x_hi, noiseless, support):
    def fn(x, args):
        mm, pp = args
        return _margin_core(mm, pp, x, noiseless, support)

    sol = optx.root_find(
        fn,
        optx.Bisection(rtol=1e-12, atol=1e-12, flip=False),
        0.5 * (x_lo + x_hi),
        (model, prep),
        options=dict(lower=x_lo, upper=x_hi),
        max_steps=200,
        throw=False,
    )
    return sol.value


__all__ = ["SpectralTheory", "spectral_theory", "weak_recovery_threshold"]
