r"""Closed forms: gradient descent on least squares with a linear model (the DMFT's
exact reference case), through the Marchenko-Pastur law.

With `S = A^T A` (`A` entries N(0, 1/d), `n = alpha d`) and `P_t(s) = (1 - eta(s + lam))^t`,
GD from `theta^0 = m0 theta* + sqrt(q0 - m0^2) xi` gives, eigen-direction by eigen-direction,

    theta^t = P_t(S) theta^0 + (1 - P_t(S)) (S + lam)^{-1} (S theta* + noise A^T eps),

and, since `theta*`, `xi` and `A^T eps` spread uniformly over the eigenbasis of `S`,
`m_t = E[a_t(s)]`, `q_t = E[a_t(s)^2 + b_t(s)^2 + noise^2 s c_t(s)^2]` under the law of
the eigenvalues `s` of `S`: `alpha` times Marchenko-Pastur with ratio `gamma = 1/alpha`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def marchenko_pastur_quadrature(alpha: float, num: int = 400):
    r"""Nodes and weights for `E g(s)`, `s` an eigenvalue of `A^T A` (d x d, `A` entries
    N(0, 1/d), `n = alpha d`), in the limit. Chebyshev substitution at the square-root
    edges makes the rule spectrally accurate for smooth `g`; for `alpha < 1` the atom
    `1 - alpha` at 0 is a node of its own."""
    gamma = 1.0 / alpha
    lo, hi = (1 - np.sqrt(gamma)) ** 2, (1 + np.sqrt(gamma)) ** 2
    x, w = np.polynomial.legendre.leggauss(num)
    phi = 0.5 * np.pi * (x + 1)
    wphi = 0.5 * np.pi * w
    c, r = 0.5 * (lo + hi), 0.5 * (hi - lo)
    xs = c + r * np.cos(phi)
    dens = (r * np.sin(phi)) ** 2 / (2 * np.pi * gamma * xs)
    nodes, weights = alpha * xs, wphi * dens
    if alpha < 1:
        nodes = np.concatenate([nodes, [0.0]])
        weights = np.concatenate([weights, [1 - alpha]])
    return jnp.asarray(nodes), jnp.asarray(weights)


def _moments(s, w, p, lam, overlap, norm, noise):
    """`m`, `q`, error from the per-eigenvalue decay `p` (`[times, eigenvalues]`) of the
    start: the start's part decays as `p`, the ridge solution's grows as `1 - p`."""
    f = 1 - p
    a = p * overlap + f * s / (s + lam)
    b = p * jnp.sqrt(norm - overlap**2)
    c = f / (s + lam) * noise
    m = (a * w).sum(-1)
    q = ((a**2 + b**2 + s * c**2) * w).sum(-1)
    return {"overlap": m, "norm": q, "error": q - 2 * m + 1}


def least_squares_theory(alpha, lam, step_size, steps, overlap, norm=1.0, noise=0.0, num=400):
    r"""The d = infinity trajectory of GD on `(r - y)^2/2 + ridge` with `y = z + noise eps`.

    **Returns:** dict with `overlap`, `norm`, `error` (`q - 2m + 1`) over t = 0..steps,
    and `kappa_inf` = `E[1/(s + lam)]`, the long-time integrated response.
    """
    s, w = marchenko_pastur_quadrature(float(alpha), num)
    p = (1 - step_size * (s + lam))[None, :] ** jnp.arange(steps + 1)[:, None]
    out = _moments(s, w, p, lam, overlap, norm, noise)
    return dict(out, kappa_inf=float((w / (s + lam)).sum()))


def gradient_flow_theory(alpha, lam, times, overlap, norm=1.0, noise=0.0, num=400):
    r"""The d = infinity trajectory of gradient flow on `(r - y)^2/2 + ridge`,
    `y = z + noise eps`, at the physical `times`: `least_squares_theory` with
    `(1 - eta (s + lam))^t` replaced by `exp(-tau (s + lam))`.

    **Returns:** dict with `overlap`, `norm`, `error` over `times`.
    """
    s, w = marchenko_pastur_quadrature(float(alpha), num)
    p = jnp.exp(-jnp.asarray(times, dtype=float)[:, None] * (s + lam)[None, :])
    return _moments(s, w, p, lam, overlap, norm, noise)


def linear_method_theory(
    alpha, coefficients, overlap, norm=1.0, noise=0.0, num=400, noise_std=None, batch_fraction=None
):
    r"""The d = infinity trajectory of any linear first-order method (an algorithm's
    `Coefficients` `(a, b, c)`, ridge included in `a`) on least squares with
    `y = z + noise eps`, eigen-direction by eigen-direction of `S = A^T A`:

        x^{t+1} = sum_j (a_j + b s c_j) x^{t-j} - b (s theta*_s + noise (A^T eps)_s)

    (`x^{-j} = x^0`: no initial velocity), so the coefficients of `theta*`, of the start's
    independent part and of the noise follow three scalar recursions per eigenvalue `s`,
    averaged under Marchenko-Pastur. Zero-mean kicks added to `theta^{t+1}` have a
    second moment per eigenvalue that follows
    `Sigma^{t+1} = M_t Sigma^t M_t^T + v_t(s) e_1 e_1^T` over the last `p` iterates
    (`M_t` the recursion's companion matrix), with `v_t(s)` the sum of

    - `noise_std_t^2` (`noise_std`, `[T]`: Langevin's `sqrt(2 eta_t T_t)`), and
    - minibatch noise, for Bernoulli masks of mean `batch_fraction` rescaled by `1/b`
      (`MinibatchSGD`): the gradient's error `b_t A^T (W - 1) r` has conditional
      covariance `b_t^2 (1 - b)/b A^T diag(r^2) A`, whose component along the
      eigenvector of `s` is `b_t^2 (1 - b)/b s sum_i u_i^2 r_i^2`, `u` the unit left
      singular vector; `u` is delocalised and only O(1/n)-correlated with `r`, so in the
      limit `v_t(s) = b_t^2 (1 - b)/b s rho_t`, `rho_t = |A theta_q^t - y|^2 / n` at
      the query point (the homogenisation of Paquette et al., exact in the limit for
      Gaussian rows: Lee, Cheng, Paquette & Paquette 2022, arXiv:2206.01029). `rho_t`
      is itself a functional of the per-eigenvalue moments, so the recursion is closed
      and causal. Fixed-size batches differ from Bernoulli masks by O(1/n); random
      reshuffling does not have this limit.

    **Returns:** dict with `overlap`, `norm`, `error`, and `train_loss`
    (`|A theta - y|^2 / (2n)`, the square loss without the regulariser) over t = 0..T.
    """
    s, w = marchenko_pastur_quadrature(float(alpha), num)
    a, b, c = (np.asarray(v, dtype=float) for v in (coefficients.a, coefficients.b, coefficients.c))
    s = np.asarray(s)
    w = np.asarray(w)
    steps, p = a.shape
    hist = {
        k: [v] * p
        for k, v in (
            ("star", np.full_like(s, overlap)),
            ("free", np.full_like(s, np.sqrt(norm - overlap**2))),
            ("noise", np.zeros_like(s)),
        )
    }
    sigma = np.zeros(steps) if noise_std is None else np.asarray(noise_std, dtype=float)
    mask_var = 0.0 if batch_fraction is None else (1 - batch_fraction) / batch_fraction
    kicks = np.zeros((s.size, p, p))  # the kicks' covariance of (x^t, ..., x^{t-p+1})

    def residual(x, y, n, var):
        """`|A theta - y|^2 / n` for the iterate with coefficients `x, y, n` and kick
        variance `var` per eigenvalue: `(1/alpha) E_s[s |theta_s - theta*_s|^2]`, less
        the noise's cross term, plus the noise's own variance."""
        spread = s * ((x - 1) ** 2 + y**2 + s * n**2 + var) - 2 * noise * s * n
        return float(np.sum(w * spread)) / alpha + noise**2

    out = {k: [] for k in ("overlap", "norm", "train_loss")}

    def record():
        x, y, n = hist["star"][-1], hist["free"][-1], hist["noise"][-1]
        out["overlap"].append(float(np.sum(w * x)))
        out["norm"].append(float(np.sum(w * (x**2 + y**2 + s * n**2 + kicks[:, 0, 0]))))
        out["train_loss"].append(0.5 * residual(x, y, n, kicks[:, 0, 0]))

    record()
    for t in range(steps):
        mult = [a[t, j] + b[t] * s * c[t, j] for j in range(p)]
        kick = sigma[t] ** 2
        if mask_var:
            query = {k: sum(c[t, j] * v[-1 - j] for j in range(p)) for k, v in hist.items()}
            var = np.einsum("j,sjk,k->s", c[t], kicks, c[t])
            kick = kick + b[t] ** 2 * mask_var * s * residual(
                query["star"], query["free"], query["noise"], var
            )
        companion = np.zeros((s.size, p, p))
        companion[:, 0, :] = np.stack(mult, axis=1) if p > 1 else mult[0][:, None]
        companion[:, 1:, :-1] = np.eye(p - 1)
        kicks = companion @ kicks @ np.swapaxes(companion, 1, 2)
        kicks[:, 0, 0] += kick
        drive = {"star": -b[t] * s, "free": 0.0, "noise": -b[t] * noise}
        for k in hist:
            past = hist[k]
            new = sum(mult[j] * past[-1 - j] for j in range(p)) + drive[k]
            past.append(new)
        record()
    out = {k: np.asarray(v) for k, v in out.items()}
    return dict(out, error=out["norm"] - 2 * out["overlap"] + 1)
