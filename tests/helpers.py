"""Shared statistics for the tests."""

import numpy as np
from scipy import stats

# Two-sided coverage of "3 standard errors" for a Gaussian.
LEVEL = 2 * stats.norm.sf(3.0)


def _count(traj):
    info = traj.info
    return info.get("num_seeds", info.get("num_replicas")) - info.get("num_diverged", 0)


def agreement(a, b, name):
    """Standardised gap `(a - b) / sqrt(se_a^2 + se_b^2)` of one observable over t, and
    the critical value it must stay under: the Student-t quantile at the coverage of
    3 Gaussian standard errors, with Welch-Satterthwaite degrees of freedom (the
    standard errors come from few seeds or replicas, so using 3 itself would reject a
    correct prediction far more often than 3 sigma promises). Points where both
    standard errors vanish (a deterministic start) must agree to 1e-9."""
    va, vb = np.asarray(a.values[name]), np.asarray(b.values[name])
    sa, sb = np.asarray(a.stderr[name]) ** 2, np.asarray(b.stderr[name]) ** 2
    na, nb = _count(a), _count(b)
    se2 = sa + sb
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = se2**2 / (sa**2 / (na - 1) + sb**2 / (nb - 1))
    dof = np.where(np.isfinite(dof), dof, 1e6)
    crit = stats.t.isf(LEVEL / 2, dof)
    z = np.where(se2 > 0, (va - vb) / np.sqrt(np.where(se2 > 0, se2, 1.0)), (va - vb) / 1e-9)
    return z, crit


def assert_agree(a, b, names, upto=None):
    for name in names:
        z, crit = agreement(a, b, name)
        z, crit = z[:upto], crit[:upto]
        bad = np.abs(z) >= crit
        assert not bad.any(), (name, int(np.argmax(bad)), float(np.abs(z).max()), float(crit.min()))


def fit_size(dims, means, ses, power: float = 1.0):
    """Weighted least-squares fit of `mean(d) = b + c d^-power` over the sizes `dims`:
    `(b, se_b, c, se_c, chi2, dof)`."""
    x = np.asarray(dims, dtype=float) ** -power
    y, s = np.asarray(means, dtype=float), np.asarray(ses, dtype=float)
    design = np.stack([np.ones_like(x), x], axis=1) / s[:, None]
    coef, *_ = np.linalg.lstsq(design, y / s, rcond=None)
    cov = np.linalg.inv(design.T @ design)
    chi2 = float(np.sum(((y - design @ coef * s) / s) ** 2))
    return coef[0], np.sqrt(cov[0, 0]), coef[1], np.sqrt(cov[1, 1]), chi2, x.size - 2


def extrapolation(dmft, sims: dict, name: str, t: int):
    """The finite-size check at one time: the simulations at several `d` (`sims[d]`)
    fitted by `b + c/d` and by `b + c/sqrt(d)`; returns a dict with both fits, the
    DMFT's value and the standardised gap of each intercept to it."""
    dims = sorted(sims)
    means = [float(sims[d].values[name][t]) for d in dims]
    ses = [float(sims[d].stderr[name][t]) for d in dims]
    v, sv = float(dmft.values[name][t]), float(dmft.stderr[name][t])
    out = {"dims": dims, "means": means, "ses": ses, "dmft": v, "dmft_se": sv}
    for key, power in (("inv_d", 1.0), ("inv_sqrt_d", 0.5)):
        b, sb, c, sc, chi2, dof = fit_size(dims, means, ses, power)
        out[key] = dict(
            b=b,
            se_b=sb,
            c=c,
            se_c=sc,
            chi2=chi2,
            dof=dof,
            p_fit=float(stats.chi2.sf(chi2, dof)) if dof > 0 else 1.0,
            z_dmft=(b - v) / np.hypot(sb, sv),
        )
    return out
