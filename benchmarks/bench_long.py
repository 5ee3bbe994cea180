"""Long horizons: the exact (tangent) mode against the windowed long-horizon mode and
integration by parts, scaling in T, memory, and the T = 1000, M = 1e5 target.

    python benchmarks/bench_long.py [--quick] [--skip-target]

Problem: the derivation's section 3c reference (alpha = 3, noise 0.1, ridge 0.05,
step 0.03, informed start overlap 0.5). Prints median [min, max] over repeats after
compilation and writes benchmarks/results/long.json.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import dmftjax as dj  # noqa: E402
from dmftjax._dmft import _replica  # noqa: E402
from dmftjax._validate import as_arrays  # noqa: E402

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from _common import fmt, peak_rss_mb, timeit, write  # noqa: E402

PROBLEM = dj.Problem(
    dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
)
INIT = dj.InformedInit(0.5, 1.0)
STEP = 0.03
WINDOW = 40
# per-sample histories of length T held by each mode (float64), see _dmft.HISTORY
HISTORIES = {"tangent": 5, "windowed": 6, "ibp": 3}


def engine(name):
    return (name, WINDOW, None)


def solver(steps, num, name, replicas=1):
    p, a, i = as_arrays((PROBLEM, dj.GradientDescent(STEP, steps), INIT))
    one = lambda k: _replica(p, a, i.dmft_start(p), k, num, engine(name))  # noqa: E731
    keys = jax.random.split(jax.random.key(0), replicas)
    return jax.jit(lambda keys: jax.lax.map(one, keys)), keys


def history_mb(name, steps, num):
    return HISTORIES[name] * (steps + 1) * num * 8 / 2**20


def scaling(quick):
    num = 2000 if quick else 5000
    grid = {
        "tangent": [25, 50, 100] if quick else [50, 100, 200, 400],
        "windowed": [25, 50, 100, 200] if quick else [50, 100, 200, 400, 800],
        "ibp": [25, 50, 100, 200] if quick else [50, 100, 200, 400, 800],
    }
    rows = []
    print(f"\nScaling in T at M = {num} (one replica), window = {WINDOW}")
    print(f"{'mode':9s} {'T':>5s}  {'median [min, max]':28s} {'history MB':>10s}")
    for name, steps_list in grid.items():
        for steps in steps_list:
            f, keys = solver(steps, num, name)
            t = timeit(lambda: f(keys), 2 if steps >= 400 else 3)
            mb = history_mb(name, steps, num)
            print(f"{name:9s} {steps:5d}  {fmt(t):28s} {mb:10.1f}")
            rows.append(
                dict(mode=name, T=steps, M=num, median=t[0], min=t[1], max=t[2], history_mb=mb)
            )
    for name in grid:
        ts = [r for r in rows if r["mode"] == name]
        slope = np.polyfit(
            np.log([r["T"] for r in ts[-3:]]), np.log([r["median"] for r in ts[-3:]]), 1
        )[0]
        print(f"{name:9s} growth over the last three T: T^{slope:.2f}")
        for r in ts:
            r["growth_exponent_last3"] = slope
    return rows


def handoff_target():
    """The same T = 1000, M = 1e5 run through `solve_dmft` with `handoff=0.01`."""
    alg = dj.GradientDescent(STEP, 1000)
    kw = dict(num_samples=25000, num_replicas=4, key=jax.random.key(0), estimator="windowed")
    t0 = time.perf_counter()
    traj = dj.solve_dmft(PROBLEM, alg, INIT, handoff=0.01, **kw)
    seconds = time.perf_counter() - t0
    print(
        f"\nT = 1000, M = 4 x 25000, handoff = 0.01: {seconds:.1f} s including compilation; "
        f"handed off at {traj.info['handoff_at']}, error at T {float(traj.error[-1]):.6f} "
        f"(fixed point {traj.info['handoff_fixed_point_error']:.6f})"
    )
    return dict(
        seconds_with_compile=seconds,
        handoff_at=traj.info["handoff_at"],
        error_T=float(traj.error[-1]),
        fixed_point_error=traj.info["handoff_fixed_point_error"],
    )


def agreement(quick):
    """Windowed against exact on the same seeds over 200 steps."""
    steps, num = (100, 2000) if quick else (200, 5000)
    kw = dict(num_samples=num, key=jax.random.key(1), num_replicas=4)
    alg = dj.GradientDescent(STEP, steps)
    exact = dj.solve_dmft(PROBLEM, alg, INIT, estimator="tangent", **kw)
    win = dj.solve_dmft(PROBLEM, alg, INIT, estimator="windowed", window=WINDOW, **kw)
    diff = np.abs(np.asarray(win.error - exact.error))
    se = np.asarray(exact.error_se)[1:]
    print(f"\nWindowed (W = {WINDOW}) against exact, {steps} steps, 4 x {num} samples, same seeds:")
    print(
        f"  max |error difference| = {diff.max():.2e}; largest Monte Carlo standard error "
        f"{se.max():.2e}, smallest {se.min():.2e}; window ratio {win.info['window_ratio']:.1e}"
    )
    return dict(
        T=steps,
        M=num,
        max_abs_diff=float(diff.max()),
        se_min=float(se.min()),
        se_max=float(se.max()),
        window_ratio=win.info["window_ratio"],
    )


def target():
    """T = 1000, M = 1e5 (4 replicas x 25000) in the windowed mode."""
    steps, num, replicas = 1000, 25000, 4
    f, keys = solver(steps, num, "windowed", replicas)
    t0 = time.perf_counter()
    compiled = f.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    obs, kernels = jax.block_until_ready(compiled(keys))
    run_s = time.perf_counter() - t0
    err = np.asarray(obs["error"])
    print(
        f"\nT = {steps}, M = {replicas} x {num} windowed: compile {compile_s:.1f} s, "
        f"run {run_s:.1f} s; history {history_mb('windowed', steps, num):.0f} MB per replica "
        f"(replicas run one after another); peak RSS {peak_rss_mb():.0f} MB"
    )
    print(f"  error at T: {err[:, -1].mean():.6f} +- {err[:, -1].std(ddof=1) / 2:.6f}")
    return dict(
        T=steps,
        M=num * replicas,
        replicas=replicas,
        compile_s=compile_s,
        run_s=run_s,
        history_mb_per_replica=history_mb("windowed", steps, num),
        peak_rss_mb=peak_rss_mb(),
        error_T=float(err[:, -1].mean()),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-target", action="store_true")
    args = ap.parse_args()
    out = {
        "machine": f"{jax.devices()[0].platform}, {jax.device_count()} device(s)",
        "dtype": "float64",
        "problem": "alpha 3, noise 0.1, ridge 0.05, step 0.03",
    }
    if not args.skip_target:
        out["target"] = target()
        out["handoff"] = handoff_target()
    out["agreement"] = agreement(args.quick)
    out["scaling"] = scaling(args.quick)
    write("long_quick.json" if args.quick else "long.json", out)


if __name__ == "__main__":
    main()
