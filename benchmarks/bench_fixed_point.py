"""Fixed-point benchmark: time per solve and per implicit gradient after compilation, a
vmapped (alpha, lam) grid, the fixed point against the late-time DMFT and finite-d
limit points, the predicted against the measured convergence rate, and the tuning
figure.

    python benchmarks/bench_fixed_point.py [--quick] [--no-validate]

Prints median [min, max] over repeats; writes benchmarks/results/fixed_point.json and
benchmarks/results/tuning.png.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import dmftjax as dj  # noqa: E402
from dmftjax._fixed_point import (  # noqa: E402
    fixed_point,
    fixed_point_sweep,
    hessian_check,
    measured_rate,
    predicted_rate,
)
from dmftjax._tune import (  # noqa: E402
    grid_search,
    plot_tuning,
    step_size_objective,
    tune_ridge,
    tune_step_size,
)

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from _common import RESULTS, fmt, timeit, write  # noqa: E402


def wirtinger(lam, alpha=3.0, prior=None):
    kw = {} if prior is None else {"prior": prior}
    return dj.Problem(
        dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=alpha, regulariser=dj.Ridge(lam), **kw
    )


def timings(out, repeats):
    base = fixed_point(wirtinger(0.05))
    start = (float(base.kappa), float(base.m), float(base.q))
    lams = iter(np.linspace(0.04, 0.06, 10 * repeats + 10))

    def solve():  # a new lam each call: no retracing, no caching of the answer
        return fixed_point(wirtinger(float(next(lams))), start=start, warn=False).error

    t = timeit(solve, repeats)
    print(f"fixed point solve (48x24x12)     {fmt(t)}")
    out["solve_s"] = t

    grad = jax.jit(
        jax.grad(
            lambda lam, alpha: fixed_point(wirtinger(lam, alpha), start=start, warn=False).error,
            argnums=(0, 1),
        )
    )
    t = timeit(lambda: grad(float(next(lams)), 3.0), repeats)
    print(f"implicit gradient d/d(lam,alpha) {fmt(t)}")
    out["grad_s"] = t

    alphas, lamg = np.meshgrid(np.linspace(2.5, 4.0, 8), np.logspace(-2, -0.5, 8), indexing="ij")
    for batch in ("vmap", "map"):

        def sweep(batch=batch):
            return fixed_point_sweep(
                wirtinger(0.05), lam=lamg, alpha=alphas, start=base, batch=batch
            ).error

        t = timeit(sweep, max(2, repeats // 4))
        res = fixed_point_sweep(wirtinger(0.05), lam=lamg, alpha=alphas, start=base, batch=batch)
        print(
            f"8x8 (alpha, lam) grid, {batch:4s}     {fmt(t)}  ({t[0] / 64 * 1e3:.1f} ms per "
            f"point, {int(np.asarray(res.converged).sum())}/64 converged)"
        )
        out[f"grid_8x8_{batch}_s"] = t
    out["grid"] = {
        "alpha": alphas.tolist(),
        "lam": lamg.tolist(),
        "error": np.asarray(res.error).tolist(),
        "converged": np.asarray(res.converged).tolist(),
    }


def validate(out, quick):
    rows = []
    for lam in (0.05, 0.2):
        problem = wirtinger(lam)
        T, M, R = (150, 1000, 6) if quick else (150, 2000, 8)
        t0 = time.perf_counter()
        traj = dj.solve_dmft(
            problem,
            dj.GradientDescent(0.05, T),
            dj.InformedInit(0.5, 1.0),
            num_samples=M,
            key=jax.random.key(11),
            num_replicas=R,
        )
        t_dmft = time.perf_counter() - t0
        fp = fixed_point(problem, start=traj)
        pred = predicted_rate(problem, 0.05, fixed=fp)
        rho = float(pred.rate)
        e = np.asarray(traj.error)
        # remaining tail after T, from two-step averages (robust to a period-2 oscillation
        # of a sample past the per-row threshold)
        step = 0.5 * (e[-1] - e[-3])
        tail = 0.5 * (e[-1] + e[-2]) - e[-1] + 0.5 * step + step * rho / (1 - rho + 1.5 * rho / T)
        # finite d: GD to the limit point (polished by Newton), Rademacher signal
        dim, seeds = (300, 8) if quick else (500, 16)
        hc = hessian_check(
            wirtinger(lam, prior=dj.RademacherPrior()),
            dj.GradientDescent(0.05, 600),
            dj.InformedInit(0.5, 1.0),
            dim=dim,
            key=jax.random.key(5),
            num_seeds=seeds,
            polish=4,
        )
        err = np.asarray(hc.error)
        stable = np.asarray(hc.gd_stable)
        rates = np.array(
            [
                measured_rate(c, limit=lim, window=(200, 400))[0]
                for c, lim, ok in zip(np.asarray(hc.errors), err, stable)
                if ok
            ]
        )
        se = lambda v: float(np.std(v, ddof=1) / math.sqrt(len(v)))  # noqa: E731
        row = {
            "lam": lam,
            "fixed_point": {
                "error": float(fp.error),
                "m": float(fp.m),
                "q": float(fp.q),
                "kappa": float(fp.kappa),
                "residual": float(fp.residual),
            },
            "dmft": {
                "T": T,
                "M": M,
                "replicas": R,
                "error_T": float(e[-1]),
                "error_T_se": float(np.asarray(traj.error_se)[-1]),
                "error_tail_corrected": float(e[-1] + tail),
                "kappa_T": -float(np.sum(np.asarray(traj.kernels["R"])[-1])),
                "seconds": t_dmft,
                "rate_from_differences": measured_rate(e, window=(T // 2, T - 1))[0],
            },
            "finite_d": {
                "dim": dim,
                "seeds": seeds,
                "error": float(err.mean()),
                "error_se": se(err),
                "kappa_trace": float(np.mean(hc.kappa_trace)),
                "kappa_trace_se": se(np.asarray(hc.kappa_trace)),
                "kappa_eq_gap_mean": float(
                    np.mean(np.asarray(hc.kappa_trace) - np.asarray(hc.kappa_equation))
                ),
                "eig_min": float(np.mean(hc.eig_min)),
                "eig_min_se": se(np.asarray(hc.eig_min)),
                "max_row_curvature": np.asarray(hc.max_row_curvature).tolist(),
                "eta_eig_max": np.asarray(0.05 * hc.eig_max).tolist(),
                "gd_stable": int(stable.sum()),
            },
            "rate": {
                "predicted": rho,
                "lower_edge": float(pred.lower_edge),
                "measured_mean": float(rates.mean()) if rates.size else None,
                "measured_se": se(rates) if rates.size > 1 else None,
                "critical_curvature": float(pred.critical_curvature),
                "unstable_row_mass": float(pred.unstable_row_mass),
                "instance_1_minus_eta_eigmin": float(np.mean(1 - 0.05 * np.asarray(hc.eig_min))),
            },
        }
        rows.append(row)
        print(
            f"lam={lam}: error  FP {row['fixed_point']['error']:.6f} | DMFT(T={T}) "
            f"{row['dmft']['error_T']:.6f} +- {row['dmft']['error_T_se']:.6f} "
            f"(tail-corrected {row['dmft']['error_tail_corrected']:.6f}) | d={dim} "
            f"{row['finite_d']['error']:.6f} +- {row['finite_d']['error_se']:.6f}"
        )
        print(
            f"        kappa  FP {float(fp.kappa):.5f} | DMFT {row['dmft']['kappa_T']:.5f} | "
            f"tr(H^-1)/d {row['finite_d']['kappa_trace']:.5f} +- "
            f"{row['finite_d']['kappa_trace_se']:.5f}"
        )
        print(
            f"        rate   predicted {rho:.5f} (edge {float(pred.lower_edge):.4f}) | "
            f"measured {row['rate']['measured_mean']:.5f} +- {row['rate']['measured_se']:.5f} "
            f"| 1 - eta eig_min {row['rate']['instance_1_minus_eta_eigmin']:.5f} "
            f"(eig_min {row['finite_d']['eig_min']:.4f})"
        )
    out["validation"] = rows


def tuning(out, quick):
    # ridge: phase retrieval (noise 0.1) against a dense grid
    pr = dj.Problem(dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=3.0)
    start = fixed_point(wirtinger(0.05))
    t0 = time.perf_counter()
    ridge = tune_ridge(pr, lam0=0.1, steps=60, start=start, progress=False)
    t_ridge = time.perf_counter() - t0
    lam_grid = np.logspace(-3, 0, 61)
    sweep = fixed_point_sweep(pr, lam=lam_grid, start=start)
    lam_vals = np.asarray(sweep.error)
    # least squares: the exact optimum is noise^2
    ls = dj.Problem(dj.LinearModel(0.5), dj.SquareLoss(), alpha=3.0)
    ls_res = tune_ridge(ls, lam0=0.02, steps=60, progress=False)
    ls_grid = np.logspace(-2, 0, 41)
    ls_vals = np.asarray(fixed_point_sweep(ls, lam=ls_grid, start=(0.5, 1.0, 1.1)).error)
    # step size: error after T = 20 steps of the DMFT (least squares, noise 0.5)
    key = jax.random.key(3)
    init = dj.InformedInit(0.5, 1.0)
    obj = step_size_objective(ls, init, horizon=20, num_samples=300, key=key)
    eta_grid = np.exp(np.linspace(np.log(0.02), np.log(0.25), 41))
    _, eta_vals, _ = grid_search(jax.jit(obj), np.log(eta_grid))
    t0 = time.perf_counter()
    step = tune_step_size(
        ls, init, horizon=20, num_samples=300, key=key, eta0=0.02, steps=30, progress=False
    )
    t_step = time.perf_counter() - t0
    fig = plot_tuning(
        [
            {
                "grid": lam_grid,
                "values": lam_vals,
                "result": ridge,
                "name": "ridge lam",
                "ylabel": "asymptotic error",
                "title": "phase retrieval, alpha=3, noise 0.1",
                "logy": True,
            },
            {
                "grid": ls_grid,
                "values": ls_vals,
                "result": ls_res,
                "name": "ridge lam",
                "ylabel": "asymptotic error",
                "title": "least squares, alpha=3, noise 0.5",
                "exact": 0.25,
            },
            {
                "grid": eta_grid,
                "values": eta_vals,
                "result": step,
                "name": "step size eta",
                "ylabel": "DMFT error after T=20",
                "title": "least squares, T=20, M=300",
            },
        ]
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "tuning.png", dpi=120)
    print(f"wrote {RESULTS / 'tuning.png'}")
    out["tuning"] = {
        "phase_retrieval_ridge": {
            "tuned": float(jnp.exp(ridge.params)),
            "value": ridge.value,
            "grid_argmin": float(lam_grid[np.argmin(lam_vals)]),
            "grid_min": float(lam_vals.min()),
            "seconds": t_ridge,
        },
        "least_squares_ridge": {
            "tuned": float(jnp.exp(ls_res.params)),
            "exact": 0.25,
            "grid_argmin": float(ls_grid[np.argmin(ls_vals)]),
        },
        "least_squares_step_size_T20": {
            "tuned": float(jnp.exp(step.params)),
            "value": step.value,
            "grid_argmin": float(eta_grid[np.nanargmin(eta_vals)]),
            "grid_min": float(np.nanmin(eta_vals)),
            "seconds": t_step,
        },
    }
    for k, v in out["tuning"].items():
        print(f"{k}: {v}")


def main(quick: bool, validate_: bool):
    out = {
        "machine": f"{jax.devices()[0].platform}, {jax.device_count()} device(s)",
        "dtype": "float64",
    }
    repeats = 5 if quick else 20
    timings(out, repeats)
    if validate_:
        validate(out, quick)
    tuning(out, quick)
    write("fixed_point.json", out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-validate", action="store_true")
    args = parser.parse_args()
    main(args.quick, not args.no_validate)
