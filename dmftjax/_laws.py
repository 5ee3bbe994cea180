r"""Distributions, not just averages: the law of one coordinate and of one row.

The DMFT describes the whole law of the iterates (the paper's "precise distributional
property"), not only the overlap and the norm:

- **one coordinate** `(theta*_j, theta^t_j)`: `theta*_j` from the prior and, given it,
  `theta^t_j ~ N(A_t theta*_j, C(t, t) - A_t^2)` exactly (the parameter side is linear
  for a ridge regulariser: `theta^t = A_t theta* + ` an independent Gaussian), so
  `Trajectory.law("coordinate", t)` of the DMFT is a `CoordinateLaw`, computed by
  quadrature, with no Monte Carlo error beyond that of `A_t` and `C(t, t)`;
- **one row** `(z_i, y_i, r_i^t)` (the index, the label and the fitted value
  `<a_i, theta^t>`): the sample side is not Gaussian, and its law is the one of the
  DMFT's Monte Carlo samples, `Trajectory.law("row", t)`, an `EmpiricalLaw` with one
  block of samples per replica.

The simulator's laws are `EmpiricalLaw`s over its rows and coordinates, one block per
seed (the global sign corrected for even links). `compare_laws` tests two laws for
equality with p-values that hold although the samples of one block are dependent: every
statistic is computed per block (seed or replica), and the blocks are independent.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ._quadrature import _hermite_nodes

ROW = ("z", "y", "r")
COORDINATE = ("theta_star", "theta")


class EmpiricalLaw:
    r"""The law of a few named quantities, as samples in independent blocks.

    `samples[name]` is an array `[blocks, n]` (the blocks are simulator seeds or DMFT
    replicas; samples within a block may be dependent, blocks are independent).

    - `expect(fn)`: `E fn(**samples)` with its standard error across blocks;
    - `quantile(name, q)`, `cdf(name, x)`, `histogram(name, bins)` of the pooled
      samples;
    - `probabilities(fn_or_name, edges)`: per-block fractions in bins (what
      `compare_laws` tests).
    """

    def __init__(self, samples: dict, *, kind: str, time, source: str):
        self.samples = {k: np.atleast_2d(np.asarray(v, dtype=float)) for k, v in samples.items()}
        self.kind, self.time, self.source = kind, time, source

    @property
    def num_blocks(self) -> int:
        return next(iter(self.samples.values())).shape[0]

    def _values(self, what):
        if callable(what):
            return np.asarray(what(**self.samples), dtype=float)
        if what not in self.samples:
            raise ValueError(f"{what!r} is not in this law; it has {sorted(self.samples)}")
        return self.samples[what]

    def expect(self, fn) -> tuple[float, float]:
        """`(E fn, standard error)`; `fn` takes the quantities as keyword arrays (e.g.
        `lambda z, y, r: (r - z)**2`) and returns an array of the same shape."""
        per_block = self._values(fn).mean(axis=1)
        se = per_block.std(ddof=1) / math.sqrt(per_block.size) if per_block.size > 1 else math.nan
        return float(per_block.mean()), float(se)

    def quantile(self, what, q):
        """Quantiles of the pooled samples of a quantity (or of `fn(**samples)`)."""
        return np.quantile(self._values(what).ravel(), q)

    def cdf(self, what, x):
        v = np.sort(self._values(what).ravel())
        return np.searchsorted(v, np.asarray(x), side="right") / v.size

    def histogram(self, what, bins=40, range=None):
        """`(density, edges)` of the pooled samples."""
        return np.histogram(self._values(what).ravel(), bins=bins, range=range, density=True)

    def probabilities(self, what, edges) -> np.ndarray:
        """`[blocks, len(edges) - 1]`: each block's fraction of samples in each bin
        (the first and last bins are open towards -inf and inf)."""
        v = self._values(what)
        inner = np.asarray(edges, dtype=float)[1:-1]
        idx = np.searchsorted(inner, v, side="right")
        k = len(edges) - 1
        return np.stack([(idx == j).mean(axis=1) for j in range(k)], axis=1)

    def __repr__(self):
        n = next(iter(self.samples.values())).shape
        return (
            f"EmpiricalLaw({self.kind}, t={self.time}, {self.source}, blocks={n[0]}, "
            f"samples per block={n[1]}, quantities={sorted(self.samples)})"
        )


class CoordinateLaw:
    r"""The DMFT's exact law of one coordinate at time `t`: `theta*_j` from the prior,
    `theta^t_j = A theta*_j + sqrt(V) G` with `G ~ N(0, 1)` independent, `A = A_t`,
    `V = C(t, t) - A_t^2` (replica means; `A_se`, `V_se` their standard errors).

    Expectations are computed by quadrature (Gauss-Hermite in `G`; the prior's own rule
    in `theta*`: Gauss-Hermite for a Gaussian prior, the two atoms for Rademacher);
    `probabilities` are exact given `(A, V)`.
    """

    def __init__(self, A, V, prior: str, *, time, A_se=0.0, V_se=0.0, num_blocks=1):
        self.A, self.V = float(A), float(max(V, 0.0))
        self.A_se, self.V_se = float(A_se), float(V_se)
        self.prior, self.kind, self.time, self.source = prior, "coordinate", time, "dmft"
        self.num_blocks = num_blocks

    def _prior_rule(self):
        if self.prior == "rademacher":
            return np.array([-1.0, 1.0]), np.array([0.5, 0.5])
        x, w = _hermite_nodes(60)
        return x, w

    def expect(self, fn) -> tuple[float, float]:
        """`(E fn(theta_star, theta), 0)` by quadrature (the standard error of `A`, `V`
        is carried by `A_se`, `V_se`, not propagated here)."""
        ts, tw = self._prior_rule()
        g, gw = _hermite_nodes(60)
        star = np.repeat(ts, g.size)
        theta = self.A * star + math.sqrt(self.V) * np.tile(g, ts.size)
        w = np.repeat(tw, g.size) * np.tile(gw, ts.size)
        return float(np.sum(w * np.asarray(fn(theta_star=star, theta=theta), dtype=float))), 0.0

    def _cdf_theta(self, x):
        ts, tw = self._prior_rule()
        x = np.asarray(x, dtype=float)[..., None]
        sd = math.sqrt(self.V) if self.V > 0 else 1e-300
        return np.sum(tw * stats.norm.cdf((x - self.A * ts) / sd), axis=-1)

    def cdf(self, what, x):
        if what == "theta":
            return self._cdf_theta(x)
        if what == "theta_star":
            if self.prior == "rademacher":
                return 0.5 * (np.asarray(x) >= -1) + 0.5 * (np.asarray(x) >= 1)
            return stats.norm.cdf(x)
        raise ValueError(f"{what!r} is not in this law; it has ['theta', 'theta_star']")

    def quantile(self, what, q):
        from scipy.optimize import brentq

        q = np.atleast_1d(np.asarray(q, dtype=float))
        span = 12.0 * (abs(self.A) + math.sqrt(self.V) + 1.0)
        out = [brentq(lambda x, p=p: float(self.cdf(what, x)) - p, -span, span) for p in q]
        return np.asarray(out)

    def probabilities(self, what, edges) -> np.ndarray:
        """`[1, len(edges) - 1]`: exact probabilities of the bins (the outer ones open)."""
        e = np.asarray(edges, dtype=float).copy()
        e[0], e[-1] = -np.inf, np.inf
        return np.diff(self.cdf(what, e))[None, :]

    def sample(self, n: int, *, seed: int = 0) -> EmpiricalLaw:
        rng = np.random.default_rng(seed)
        star = rng.choice([-1.0, 1.0], n) if self.prior == "rademacher" else rng.standard_normal(n)
        theta = self.A * star + math.sqrt(self.V) * rng.standard_normal(n)
        return EmpiricalLaw(
            {"theta_star": star, "theta": theta}, kind="coordinate", time=self.time, source="dmft"
        )

    def histogram(self, what, bins=40, range=None):
        return self.sample(200000).histogram(what, bins=bins, range=range)

    def __repr__(self):
        return (
            f"CoordinateLaw(t={self.time}, theta = {self.A:.4g} theta* + "
            f"sqrt({self.V:.4g}) G, prior={self.prior})"
        )


class LawComparison:
    """The outcome of `compare_laws`: per-bin probabilities of both laws with their
    standard errors, the per-bin Welch t-statistics, and `p_value` (Bonferroni over the
    bins of per-bin Welch t-tests across blocks: valid whatever the dependence within
    a block)."""

    def __init__(self, edges, pa, sa, pb, sb, t, p_bins, p_value, what):
        self.edges, self.p_a, self.se_a, self.p_b, self.se_b = edges, pa, sa, pb, sb
        self.t, self.p_bins, self.p_value, self.what = t, p_bins, p_value, what

    def __repr__(self):
        return (
            f"LawComparison({self.what!r}: {len(self.p_a)} bins, largest |t| = "
            f"{np.max(np.abs(self.t)):.2f}, p = {self.p_value:.3g})"
        )


def _block_stats(law, what, edges):
    probs = law.probabilities(what, edges)
    n = probs.shape[0]
    mean = probs.mean(axis=0)
    se = probs.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(mean)
    return mean, se, n


def compare_laws(a, b, what, *, bins: int = 10) -> LawComparison:
    r"""Test whether two laws (`EmpiricalLaw` or `CoordinateLaw`, e.g. the DMFT's and the
    simulator's at the same `t`) give a quantity the same distribution.

    The quantity (`what`: a name such as `"r"`, or a function of the named quantities) is
    cut into `bins` bins at quantiles of the pooled samples of both; each law's
    probability of each bin is computed per block (seed or replica; exactly for a
    `CoordinateLaw`), and each bin is tested by Welch's t-test across blocks. The
    p-value is the smallest per-bin p-value times the number of bins (Bonferroni), which
    is valid (conservative) whatever the dependence between samples of one block and
    between bins.

    **Returns:** a `LawComparison`.
    """
    pool = []
    for law in (a, b):
        if isinstance(law, EmpiricalLaw):
            pool.append(law._values(what).ravel())
    if not pool:
        pool.append(a.sample(100000)._values(what).ravel())
    pooled = np.concatenate(pool)
    edges = np.quantile(pooled, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    if np.any(np.diff(edges[1:-1]) <= 0):
        raise ValueError(f"{what!r} has atoms: fewer bins are needed (got bins={bins})")
    pa, sa, na = _block_stats(a, what, edges)
    pb, sb, nb = _block_stats(b, what, edges)
    se2 = sa**2 + sb**2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (pa - pb) / np.sqrt(se2)
        num = se2**2
        den = np.where(na > 1, sa**4 / max(na - 1, 1), 0) + np.where(
            nb > 1, sb**4 / max(nb - 1, 1), 0
        )
        dof = np.where(den > 0, num / den, 1e6)
    p_bins = 2 * stats.t.sf(np.abs(t), dof)
    p_bins = np.where(np.isfinite(p_bins), p_bins, 1.0)
    p_value = float(min(1.0, bins * p_bins.min()))
    return LawComparison(
        edges,
        pa,
        sa,
        pb,
        sb,
        t,
        p_bins,
        p_value,
        what if isinstance(what, str) else getattr(what, "__name__", "fn"),
    )


__all__ = ["EmpiricalLaw", "CoordinateLaw", "LawComparison", "compare_laws"]
