r"""DMFT of spectral-initialised gradient descent (derivation, sections 2 and 3b).

Two treatments of the start that must agree:

- `"slot"` (default): the top eigenvector as one stationary slot `v` with
  `v = m_v theta* + R_vv u^v`, `(R_vv, m_v)` from the closed form (`spectral_theory`),
  then `theta^0 = s0 v` and GD. No power steps and no tiny overlap; antithetic pairs
  are used anyway, as variance reduction (they cut the standard error about 3x).
- `"prehistory"`: `K` normalised shifted power steps on `D` from a start with a small
  overlap `eps0` (independent of the data), the last one rescaled by `s0`, then GD.
  The shift and `K` come from the predicted spectrum: `shift = -(lam_2 + lam_min)/2`
  centres the bulk, `K` makes `(rho^K / eps0)^2` negligible, `rho` the contraction.
"""

from __future__ import annotations

import math
import warnings

import equinox as eqx
import jax

from ._dmft import _gd_plan, _solve_general
from ._preprocess import AbstractPreprocessing
from ._spectral import spectral_theory, weak_recovery_threshold

MAX_POWER_STEPS = 2000


class _Negated(AbstractPreprocessing):
    """`-T`: its top bulk edge is minus the bottom edge of the spectrum of `D`."""

    inner: AbstractPreprocessing

    def __call__(self, y):
        return -self.inner(y)

    def breakpoints(self):
        return self.inner.breakpoints()


def check_outlier(problem, init):
    """The closed form of the start; refuses (ValueError) without an outlier."""
    theory = spectral_theory(problem, init.preprocessing)
    if not bool(theory.has_outlier):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            thr = float(weak_recovery_threshold(problem.model, init.preprocessing))
        if math.isfinite(thr):
            where = f"the weak-recovery threshold of this preprocessing is alpha = {thr:.4g}"
        else:
            where = "no alpha up to 1000 gives an outlier with this preprocessing"
        raise ValueError(
            f"no spectral outlier at alpha = {float(problem.alpha):.4g}: the top eigenvector "
            f"carries no overlap, so spectral-initialised GD has no meaningful DMFT; {where}. "
            f"{theory.explanation}"
        )
    return theory


def power_schedule(problem, init, eps0: float, tol: float = 1e-2):
    """`(shift, K, rho)` for the prehistory from the predicted spectrum of `D`."""
    theory = check_outlier(problem, init)
    lam1, lam2 = float(theory.top_eigenvalue), float(theory.bulk_edge)
    neg = spectral_theory(problem, _Negated(init.preprocessing.specialise(problem.alpha)))
    lam_min = -float(neg.bulk_edge)
    if not math.isfinite(lam_min):
        raise ValueError(
            "the preprocessing is unbounded below, so the spectrum of D has no bottom edge and "
            "no shift makes the power method converge; clip it from below "
            "(e.g. LuoAlghamdiLu(clip=-5)) or use the stationary slot"
        )
    shift = -(lam2 + lam_min) / 2
    rho = (lam2 - lam_min) / 2 / (lam1 + shift)
    if not 0 < rho < 1:
        raise ValueError(
            f"the shifted power method does not contract here (rate {rho:.4g}); use "
            "spectral_method='slot'"
        )
    steps = int(math.ceil(math.log(tol * eps0) / math.log(rho)))
    if steps > MAX_POWER_STEPS:
        raise ValueError(
            f"the prehistory would need {steps} power steps (spectral gap too small: rate "
            f"{rho:.4g}, close to the weak-recovery threshold); use spectral_method='slot'"
        )
    return shift, steps, rho


def solve_spectral_one(problem, algorithm, init, key, num_samples: int, estimator: str,
                       method: str, theory=None, schedule=None, eps0: float = 0.1,
                       law_times: tuple = ()):
    """One replica. Returns GD observables over t = 0..T, kernels on the GD grid, and the
    start's diagnostics (the slot's sampled normalisation, or the power-phase cosine)."""
    prep = init.preprocessing.specialise(problem.alpha)
    z_tangent = problem.model.smooth and len(prep.breakpoints()) == 0
    s0 = init.scale
    if method == "slot":
        plan = _gd_plan(problem, algorithm, slot=True)
        obs, kernels = _solve_general(
            problem, plan, key, num_samples, estimator, a0=theory.m_v, b0=0.0,
            slot=(theory.R_vv, theory.m_v), prep=prep, z_tangent=z_tangent, s0=s0,
            antithetic=True, law_slots=tuple(1 + t for t in law_times))
        first = 1
        extra = {"norm_v": kernels["C"][0, 0]}
    else:
        shift, steps, _ = schedule
        plan = _gd_plan(problem, algorithm, power_slots=steps, shift=shift)
        obs, kernels = _solve_general(
            problem, plan, key, num_samples, estimator, a0=eps0,
            b0=math.sqrt(1 - eps0**2), prep=prep, antithetic=True, z_tangent=z_tangent, s0=s0,
            law_slots=tuple(steps + t for t in law_times))
        first = steps
        extra = {"power_cosine": obs["cosine"][:steps]}
        obs = jax.tree.map(lambda c: c[steps:], obs)
    kernels = {k: v if k.startswith("rows_") else (v[first:, first:] if v.ndim == 2 else v[first:])
               for k, v in kernels.items()}
    return obs, kernels, extra


@eqx.filter_jit
def solve_spectral_batch(problem, algorithm, init, keys, num_samples, estimator, method,
                         theory, schedule, eps0, law_times=()):
    from ._dmft import TRACES

    TRACES["dmft"] += 1
    def one(k):
        return solve_spectral_one(problem, algorithm, init, k, num_samples, estimator, method,
                                  theory, schedule, eps0, law_times)

    if estimator[0] == "windowed":  # long horizons: one replica's history at a time
        return jax.lax.map(one, keys)
    return jax.vmap(one)(keys)


__all__ = ["solve_spectral_batch", "check_outlier", "power_schedule"]
