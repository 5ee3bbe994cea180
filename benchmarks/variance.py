"""Relative Monte Carlo error of the DMFT error curve at M = 1e5 on regularised Wirtinger
flow (alpha = 3, noiseless, ridge 0.01), informed and spectral starts, long-horizon mode.

    python benchmarks/variance.py [--quick]

Target (issue 6): relative standard error at most 5% while the error is above 1e-3 and
at most 20% down to 1e-4. Prints the curve, the fixed point it approaches and the
trapped (wrong-well) fraction; writes benchmarks/results/variance.json.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import dmftjax as dj  # noqa: E402

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from _common import write  # noqa: E402

PROBLEM = dj.Problem(dj.PhaseRetrieval(0.0), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.01))
STARTS = {
    "informed": (dj.InformedInit(0.8, 1.0), 0.03),
    "spectral": (dj.SpectralInit(dj.MondelliMontanari()), 0.03),
}


def band(err, rel, lo, hi):
    sel = (err > lo) & (err <= hi)
    sel[0] = False  # t = 0 is deterministic for an informed start
    if not sel.any():
        return None
    return dict(max=float(rel[sel].max()), median=float(np.median(rel[sel])), steps=int(sel.sum()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    steps, total, replicas = (150, 20000, 4) if args.quick else (400, 100000, 8)
    fixed = dj.fixed_point(PROBLEM)
    out = {"problem": "alpha 3, noiseless, ridge 0.01, step 0.03", "samples": total,
           "replicas": replicas, "steps": steps, "fixed_point_error": float(fixed.error)}
    print(f"fixed point error {float(fixed.error):.3e}")
    for name, (init, step) in STARTS.items():
        t0 = time.perf_counter()
        traj = dj.solve_dmft(PROBLEM, dj.GradientDescent(step, steps), init,
                             num_samples=total // replicas, num_replicas=replicas,
                             key=jax.random.key(7), estimator="windowed")
        elapsed = time.perf_counter() - t0
        err, se = np.asarray(traj.error), np.asarray(traj.error_se)
        rel = se / err
        above, below = band(err, rel, 1e-3, np.inf), band(err, rel, 1e-4, 1e-3)
        floor = band(err, rel, 0.0, 1e-4)
        print(f"\n{name} start, {replicas} x {total // replicas} samples, {steps} steps "
              f"({elapsed:.0f} s with compilation)")
        print(f"  relative s.e. where error > 1e-3:        {above}")
        print(f"  relative s.e. where 1e-4 < error <= 1e-3: {below}")
        print(f"  relative s.e. where error <= 1e-4:        {floor}")
        print(f"  error at T {err[-1]:.3e} +- {se[-1]:.1e}; wrong well at T "
              f"{float(traj.wrong_well[-1]):.2e} +- {float(traj.wrong_well_se[-1]):.1e}")
        for t in (0, 10, 50, 100, 200, 300, steps):
            if t <= steps:
                print(f"  t = {t:4d}  error {err[t]:.3e} +- {se[t]:.1e} ({rel[t]:.3f})")
        out[name] = dict(above_1e3=above, band_1e4_1e3=below, below_1e4=floor,
                         error=err.tolist(), stderr=se.tolist(),
                         wrong_well=np.asarray(traj.wrong_well).tolist(), seconds=elapsed)
    write("variance_quick.json" if args.quick else "variance.json", out)


if __name__ == "__main__":
    main()
