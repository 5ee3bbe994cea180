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
