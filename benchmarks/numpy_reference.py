"""A straightforward numpy implementation of the same DMFT equations (tangent estimator,
informed start, phase retrieval + Wirtinger loss + ridge), used as the speed baseline
and as an independent cross-check of the JAX solver (same seeds -> same numbers).

Derivatives are hand-written here on purpose: this file must not share code with the
package it checks.
"""

from __future__ import annotations

import numpy as np


def solve_numpy(seeds, alpha, lam, eta_step, steps, m0, q0, noise=0.0):
    """`seeds`: `[M, steps + 3]` whitened standard Gaussians (z, eps, xi, eta_0..).
    Returns the error curve over t = 0..steps and the kernels."""
    M = seeds.shape[0]
    T1 = steps + 1
    z, eps, xi = seeds[:, 0], seeds[:, 1], seeds[:, 2]
    eta = np.concatenate([seeds[:, 3:], np.zeros((M, 1))], axis=1)
    y = z**2 + noise * eps
    a, b = 1.0 - eta_step * lam, -eta_step
    A = np.zeros(T1 + 1)
    B = np.zeros(T1 + 1)
    A[0], B[0] = m0, np.sqrt(q0 - m0**2)
    R = np.zeros((T1 + 1, T1))
    L = np.zeros((T1, T1))
    Q = np.zeros((M, T1))
    H = np.zeros((M, T1))
    DGZ = np.zeros((M, T1))
    Gam = np.zeros((T1, T1))
    err = np.zeros(T1)
    sa = np.sqrt(alpha)
    for t in range(T1):
        Rt = R[t, :t] @ L[:t, :t] if t else np.zeros(0)
        w = A[t] * z + B[t] * xi + eta[:, :t] @ Rt
        r = w + Q[:, :t] @ Rt / sa
        g = r * (r**2 - y)
        h = 3 * r**2 - y
        q = A[t] ** 2 + B[t] ** 2 + Rt @ Rt
        err[t] = q - 2 * abs(A[t]) + 1
        # incremental QR, twice
        c = Q[:, :t].T @ g / M
        res = g - Q[:, :t] @ c
        c2 = Q[:, :t].T @ res / M
        res -= Q[:, :t] @ c2
        c += c2
        nrm = np.sqrt(np.mean(res**2))
        Q[:, t] = res / nrm if nrm > 0 else 0.0
        L[t, :t] = sa * c
        L[t, t] = sa * nrm
        H[:, t] = h
        # adjoint: x_s = h^s sum_{s<s'<=t} R(s',s) x_s'
        x = np.zeros((M, t + 1))
        x[:, t] = 1.0
        for s in range(t - 1, -1, -1):
            x[:, s] = H[:, s] * (x[:, s + 1 : t + 1] @ R[s + 1 : t + 1, s])
        Gam[t, : t + 1] = alpha * np.mean(h[:, None] * x, axis=0)
        drz = DGZ[:, :t] @ R[t, :t]
        dgz = -r * 2 * z + h * drz  # d loss'/dy = -r, dy/dz = 2z
        DGZ[:, t] = dgz
        gstar = alpha * np.mean(dgz)
        gr = Gam[t, : t + 1]
        A[t + 1] = a * A[t] + b * (gr @ A[: t + 1] + gstar)
        B[t + 1] = a * B[t] + b * (gr @ B[: t + 1])
        R[t + 1, : t + 1] = a * R[t, : t + 1] + b * (gr @ R[: t + 1, : t + 1])
        R[t + 1, t] += b
    return err, {"A": A[:T1], "B": B[:T1], "R": R[:T1], "Gamma": Gam, "L": L}
