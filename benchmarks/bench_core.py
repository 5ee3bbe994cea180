"""Core benchmark: DMFT against the numpy reference, DMFT scaling in T and M, simulation
scaling in d, and the cost of equal accuracy (DMFT against simulation).

    python benchmarks/bench_core.py [--quick]

Prints median [min, max] over repeats, after compilation; writes
benchmarks/results/core.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import dmftjax as dj  # noqa: E402
from dmftjax._dmft import _replica, whitened_seeds  # noqa: E402
from dmftjax._simulate import simulate_one  # noqa: E402
from dmftjax._validate import as_arrays  # noqa: E402

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from _common import fmt, peak_rss_mb, timeit, write  # noqa: E402
from numpy_reference import solve_numpy  # noqa: E402

PROBLEM = dj.Problem(
    dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
)
INIT = dj.InformedInit(0.5, 1.0)


def dmft_fn(steps, num, estimator="tangent"):
    p, a, i = as_arrays((PROBLEM, dj.GradientDescent(0.05, steps), INIT))
    f = jax.jit(lambda k: _replica(p, a, i.dmft_start(p), k, num, (estimator, 0, None)))
    return lambda: f(jax.random.key(0))


def sim_fn(steps, dim):
    p, a, i = as_arrays((PROBLEM, dj.GradientDescent(0.05, steps), INIT))
    n = int(round(3.0 * dim))
    f = jax.jit(lambda k: simulate_one(p, a, i, dim, n, k))
    return lambda: f(jax.random.key(0))


def main(quick: bool, only_reference: bool = False):
    out = {
        "machine": f"{jax.devices()[0].platform}, {jax.device_count()} device(s)",
        "dtype": "float64",
    }
    rep = 2 if quick else 3

    # 1. JAX against the numpy reference (same equations, tangent estimator)
    steps, num = (50, 5000) if quick else (100, 20000)
    jt = timeit(dmft_fn(steps, num), rep)
    seeds = np.asarray(whitened_seeds(jax.random.key(0), num, steps + 3))
    nt = []
    for _ in range(rep):
        t0 = time.perf_counter()
        solve_numpy(seeds, 3.0, 0.05, 0.05, steps, 0.5, 1.0, noise=0.1)
        nt.append(time.perf_counter() - t0)
    nt = (float(np.median(nt)), min(nt), max(nt))
    ibp = timeit(dmft_fn(steps, num, "ibp"), rep)
    print(f"\nT = {steps}, M = {num}")
    print(f"  numpy reference (tangent) {fmt(nt)}")
    print(f"  dmftjax tangent (jit)      {fmt(jt)}   speed-up {nt[0] / jt[0]:.1f}x")
    print(f"  dmftjax ibp (jit)          {fmt(ibp)}   speed-up {nt[0] / ibp[0]:.1f}x")
    out["reference"] = dict(steps=steps, samples=num, numpy=nt, tangent=jt, ibp=ibp)
    if only_reference:
        write("core_reference.json", out)
        return

    # 2. DMFT scaling in T and M
    print("\nDMFT scaling (one replica)")
    rows = []
    for steps in [50, 100] if quick else [50, 100, 200, 400]:
        for num in [2000, 8000] if quick else [5000, 20000]:
            for est in ("tangent", "ibp"):
                if est == "tangent" and steps * steps * num > 200 * 200 * 20000:
                    continue
                t = timeit(dmft_fn(steps, num, est), 1 if steps >= 200 else rep)
                mem = 8 * num * (steps + 1) * (4 if est == "tangent" else 3) / 2**20
                rows.append(dict(steps=steps, samples=num, estimator=est, time=t, state_mb=mem))
                print(f"  T={steps:4d} M={num:6d} {est:8s} {fmt(t)}   O(M T) state {mem:7.1f} MB")
    out["dmft_scaling"] = rows

    # 3. simulation scaling in d (one seed, T = 100)
    print("\nsimulation, one seed, T = 100")
    srows = []
    for dim in [500, 1000] if quick else [500, 1000, 2000, 4000]:
        t = timeit(sim_fn(100, dim), rep if dim <= 2000 else 1)
        srows.append(dict(dim=dim, time=t))
        print(f"  d={dim:5d} {fmt(t)}")
    out["sim_scaling"] = srows

    # 4. equal accuracy: the error after 20 steps to standard error eps
    steps = 20
    reps, num = 8, 20000
    dm = dj.solve_dmft(
        PROBLEM,
        dj.GradientDescent(0.05, steps),
        INIT,
        num_samples=num,
        num_replicas=reps,
        key=jax.random.key(1),
    )
    t_dmft = timeit(
        lambda: dj.solve_dmft(
            PROBLEM,
            dj.GradientDescent(0.05, steps),
            INIT,
            num_samples=num,
            num_replicas=reps,
            key=jax.random.key(1),
        ).values["error"],
        1,
    )
    eps = float(dm.error_se[-1])
    # finite-size bias of the error at t = 20 measured in tests: ~ c/d with c ~ 1.9
    bias_c = 1.9
    dim = int(math.ceil(bias_c / eps / 100) * 100)
    sim = dj.simulate(
        PROBLEM,
        dj.GradientDescent(0.05, steps),
        INIT,
        dim=min(dim, 2000),
        num_seeds=8,
        key=jax.random.key(2),
    )
    sd_seed = float(sim.error_se[-1]) * math.sqrt(8) * math.sqrt(min(dim, 2000) / dim)
    seeds_needed = max(2, math.ceil((sd_seed / eps) ** 2))
    t_seed = timeit(sim_fn(steps, dim), 1)[0]
    t_sim = seeds_needed * t_seed
    print(f"\nequal accuracy on the error at t = {steps}: standard error {eps:.2e}")
    print(f"  DMFT: M = {reps} x {num}: {t_dmft[0]:.2f} s")
    print(
        f"  simulation: d >= {dim} (bias {bias_c}/d below the error), per-seed sd {sd_seed:.2e}"
        f" -> {seeds_needed} seeds x {t_seed:.2f} s = {t_sim:.1f} s"
    )
    print(f"  ratio: simulation / DMFT = {t_sim / t_dmft[0]:.0f}x")
    out["equal_accuracy"] = dict(
        steps=steps,
        stderr=eps,
        dmft_time=t_dmft[0],
        dim=dim,
        seeds=seeds_needed,
        sim_time=t_sim,
        ratio=t_sim / t_dmft[0],
    )
    out["peak_rss_mb"] = peak_rss_mb()
    print(f"\npeak resident memory {out['peak_rss_mb']:.0f} MB")
    write("core.json", out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--reference-only",
        action="store_true",
        help="only the numpy-against-jit comparison (to re-measure on a quiet machine)",
    )
    args = ap.parse_args()
    main(args.quick, args.reference_only)
