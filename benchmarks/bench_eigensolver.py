"""Spectral start in the simulator: time of the top eigenvector of
`D = sum_i T(y_i) a_i a_i^T`, dense (`eigh` of the formed matrix) against matrix-free
Lanczos, for d = 1000, 2000, 4000, 10000 (dense up to 4000).

    python benchmarks/bench_eigensolver.py [--quick] [--alpha 2] [--repeats 3]

Noiseless phase retrieval with the Mondelli-Montanari preprocessing (bounded:
`-1/(sqrt(2 alpha) - 1) <= T < 1`). Times exclude drawing the data and compilation;
median [min, max] over repeats. Writes benchmarks/results/eigensolver.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.dirname(__file__))

from _common import fmt, peak_rss_mb, timeit, write  # noqa: E402

import dmftjax as dj  # noqa: E402
from dmftjax._spectral_init import _draw_data  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d = 500, 1000 only")
    parser.add_argument("--alpha", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    dims = [500, 1000] if args.quick else [1000, 2000, 4000, 10000]
    dense_max = 4000
    problem = dj.Problem(dj.PhaseRetrieval(), dj.WirtingerLoss(), args.alpha)
    prep = dj.MondelliMontanari().specialise(args.alpha)
    theory = dj.spectral_theory(problem, dj.MondelliMontanari())
    rows = []
    print(
        f"alpha = {args.alpha}, T = Mondelli-Montanari, float64, {jax.devices()[0]}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"theory: cos^2 = {float(theory.cosine2):.4f}, lam1 = {float(theory.top_eigenvalue):.4f}")
    print(
        f"{'d':>6} {'n':>6} {'method':>8} {'time (median [min, max])':>30} {'matvecs':>8} "
        f"{'lam1':>9} {'cos^2':>7}"
    )
    for d in dims:
        n = int(round(args.alpha * d))
        key = jax.random.key(d)
        theta_star, a, y = jax.jit(lambda k: _draw_data(problem, d, n, k))(key)  # noqa: B023
        t = jax.vmap(prep)(y)
        jax.block_until_ready((a, t))
        results = {}
        for method in ("dense", "lanczos"):
            if method == "dense" and d > dense_max:
                continue

            def run(method=method, a=a, t=t):
                return dj.top_eigenpair(a, t, key=key, method=method)

            t0 = time.perf_counter()
            lam, x, info = jax.block_until_ready(run())
            first = time.perf_counter() - t0
            timing = timeit(run, repeats=args.repeats)
            cos2 = float((x @ theta_star) ** 2 / (theta_star @ theta_star))
            results[method] = (lam, x)
            row = dict(
                d=d,
                n=n,
                method=method,
                median_s=timing[0],
                min_s=timing[1],
                max_s=timing[2],
                first_call_s=first,
                matvecs=int(info.matvecs),
                lam1=float(lam),
                cosine2=cos2,
                converged=bool(info.converged),
                relative_residual=float(info.residual / abs(lam)),
            )
            rows.append(row)
            print(
                f"{d:>6} {n:>6} {method:>8} {fmt(timing):>30} {row['matvecs']:>8} "
                f"{row['lam1']:>9.5f} {cos2:>7.4f}",
                flush=True,
            )
        if len(results) == 2:
            (l1, x1), (l2, x2) = results["dense"], results["lanczos"]
            print(
                f"{'':>6} agreement: |lam_dense - lam_lanczos| / lam = "
                f"{abs(float(l1 - l2)) / abs(float(l1)):.1e}, 1 - |<x_dense, x_lanczos>| = "
                f"{1 - abs(float(x1 @ x2)):.1e}"
            )
        del a, t
    write(
        "eigensolver.json",
        dict(
            alpha=args.alpha,
            preprocessing="MondelliMontanari",
            repeats=args.repeats,
            theory=dict(cosine2=float(theory.cosine2), top_eigenvalue=float(theory.top_eigenvalue)),
            machine=dict(
                platform=platform.platform(),
                cpus=os.cpu_count(),
                device=str(jax.devices()[0]),
                jax=jax.__version__,
                load_average_at_end=os.getloadavg()[0],
            ),
            peak_rss_mb=peak_rss_mb(),
            rows=rows,
        ),
    )


if __name__ == "__main__":
    main()
