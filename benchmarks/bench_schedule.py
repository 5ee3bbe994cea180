"""Reverse-mode gradients through the DMFT: a per-step step-size schedule tuned with optax.

Side by side, for T = 25, 50, 100 steps of regularised Wirtinger flow (alpha 3, noise 0.2,
lam 0.05, M = 1000 samples): the time and the compiled working memory of one gradient of
the final error over all T step sizes, by reverse mode (`reverse_mode=True`: sqrt(T)
checkpointed blocks) and by forward mode (`jax.jacfwd`, one tangent per step size).

Then the tuning (T = 20 or 50): the best constant step of a grid against a schedule of
one step size per step tuned by adam through reverse mode, the tuned schedule checked
with a fresh DMFT key and with the simulator (d = 1000, 8 seeds, the same data for both
schedules). `--problem wirtinger` (default; the objective is one DMFT replica of M = 1000
samples) or `--problem least-squares` (the DMFT is exact there; GD has converged by T = 50,
so there is little to gain). Writes `benchmarks/results/schedule-<problem>.json` and `.png`.

    python benchmarks/bench_schedule.py [--problem wirtinger|least-squares] [--no-timing]
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

import dmftjax as dj  # noqa: E402
from _common import RESULTS, fmt, peak_rss_mb, timeit, write  # noqa: E402

WIRTINGER = dj.Problem(dj.PhaseRetrieval(0.2), dj.WirtingerLoss(), alpha=3.0,
                       regulariser=dj.Ridge(0.05))
LEAST_SQUARES = dj.Problem(dj.LinearModel(0.3), dj.SquareLoss(), alpha=3.0,
                           regulariser=dj.Ridge(0.05))
CASES = {  # problem, start, tuned horizon, DMFT samples of the objective, step grid
    # T = 20: beyond about 25 steps the DMFT's pathwise derivatives stop following the
    # smooth trend (innovation ratio < 1e-6, see dmft_replica), printed below per T
    "wirtinger": (WIRTINGER, dj.InformedInit(0.5, 1.0), 20, 1000, (0.01, 0.2, 9)),
    "least-squares": (LEAST_SQUARES, dj.InformedInit(0.0, 1.0), 50, 128, (0.05, 0.3, 11)),
}
KEY = jax.random.key(21)


def final_error(steps, reverse, problem=WIRTINGER, init=CASES["wirtinger"][1], m=1000):
    def f(log_eta):
        alg = dj.GradientDescent(jnp.exp(log_eta), steps)
        obs, _ = dj.dmft_replica(problem, alg, init, key=KEY, num_samples=m,
                                 reverse_mode=reverse)
        return obs["error"][-1]
    return f


def temp_mb(fn, x):
    compiled = jax.jit(fn).lower(x).compile()
    analysis = compiled.memory_analysis()
    return None if analysis is None else analysis.temp_size_in_bytes / 2**20


def main():
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--problem", choices=sorted(CASES), default="wirtinger")
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()
    rows = []
    for steps in () if args.no_timing else (25, 50, 100):
        x = jnp.full(steps, np.log(0.03))
        rev = jax.grad(final_error(steps, True))
        fwd = jax.jacfwd(final_error(steps, False))
        value = jax.jit(final_error(steps, False))
        t_val = timeit(lambda: value(x))
        t_rev = timeit(lambda: jax.jit(rev)(x))
        t_fwd = timeit(lambda: jax.jit(fwd)(x), repeats=1 if steps > 50 else 3)
        g_rev, g_fwd = np.asarray(jax.jit(rev)(x)), np.asarray(jax.jit(fwd)(x))
        row = dict(steps=steps, value_s=t_val, reverse_s=t_rev, forward_s=t_fwd,
                   value_temp_mb=temp_mb(final_error(steps, False), x),
                   reverse_temp_mb=temp_mb(rev, x), forward_temp_mb=temp_mb(fwd, x),
                   max_rel_diff=float(np.max(np.abs(g_rev - g_fwd)) / np.max(np.abs(g_fwd))))
        _, ker = dj.dmft_replica(WIRTINGER, dj.GradientDescent(0.03, steps), CASES["wirtinger"][1],
                                 key=KEY, num_samples=1000)
        inn = np.abs(np.asarray(ker["innovation"]))
        row["innovation_ratio"] = float(inn[inn > 0].min() / inn.max())
        rows.append(row)
        print(f"T = {steps:3d}  value {fmt(t_val)}  reverse {fmt(t_rev)}  forward {fmt(t_fwd)}"
              f"  temp MB: value {row['value_temp_mb']:.1f} reverse {row['reverse_temp_mb']:.1f}"
              f" forward {row['forward_temp_mb']:.1f}  |rev - fwd| / |fwd| "
              f"{row['max_rel_diff']:.1e}  innovation ratio {row['innovation_ratio']:.1e}")

    problem, init, steps, m, (lo, hi, num) = CASES[args.problem]
    f = final_error(steps, True, problem, init, m)
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), num))
    values = np.asarray(jax.jit(jax.vmap(lambda e: f(jnp.full(steps, jnp.log(e)))))(
        jnp.asarray(grid)))
    best = int(np.nanargmin(values))
    t0 = time.perf_counter()
    res = dj.tune(f, jnp.full(steps, np.log(grid[best])), optimizer=optax.adam(0.05),
                  steps=40, progress=False)
    t_tune = time.perf_counter() - t0
    schedule = np.exp(np.asarray(res.best_params))
    sims = {name: dj.simulate(problem, dj.GradientDescent(s, steps), init, dim=1000,
                              num_seeds=8, key=jax.random.key(22), test_rows=0)
            for name, s in (("tuned", jnp.asarray(schedule)), ("constant", grid[best]))}
    dmft = {name: dj.solve_dmft(problem, dj.GradientDescent(s, steps), init,
                                num_samples=4000, num_replicas=8, key=jax.random.key(23))
            for name, s in (("tuned", jnp.asarray(schedule)), ("constant", grid[best]))}
    print(f"{args.problem}, T = {steps}: best constant step {grid[best]:.4g} -> error "
          f"{values[best]:.6f}; tuned schedule ({steps} parameters, 40 adam steps, "
          f"{t_tune:.0f} s) -> {res.best_value:.6f}")
    runs = {k: np.asarray(v.info["final_error_runs"]) for k, v in sims.items()}
    print(f"  simulation, per seed (same data): tuned {np.round(runs['tuned'], 5)}")
    print(f"                                 constant {np.round(runs['constant'], 5)}")
    print(f"  diverged seeds: tuned {sims['tuned'].info['num_diverged']}, constant "
          f"{sims['constant'].info['num_diverged']}; DMFT replicas (fresh key): tuned "
          f"{dmft['tuned'].info['num_diverged']}, constant {dmft['constant'].info['num_diverged']}")
    for name in sims:
        print(f"  {name:8s} DMFT (fresh key) {float(dmft[name].error[-1]):.4f} "
              f"+- {float(dmft[name].error_se[-1]):.4f}   simulation d = 1000, 8 seeds "
              f"{float(sims[name].error[-1]):.4f} +- {float(sims[name].error_se[-1]):.4f}")
    from dmftjax._validate import available_memory

    have = available_memory() / 2**20
    print(f"peak RSS {peak_rss_mb():.0f} MB of the machine's {have:.0f} MB "
          f"({100 * peak_rss_mb() / have:.1f}%)")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(schedule, ".-", label="tuned (reverse mode, adam)")
    a1.axhline(grid[best], color="k", ls="--", label=f"best constant {grid[best]:.3g}")
    a1.set(xlabel="step t", ylabel="step size", title="schedule")
    a1.legend(fontsize=8)
    for name, color in (("tuned", "C0"), ("constant", "k")):
        a2.plot(np.asarray(dmft[name].error), color=color, label=f"{name}: DMFT")
        a2.errorbar(np.arange(steps + 1), np.asarray(sims[name].error),
                    yerr=2 * np.asarray(sims[name].error_se), fmt=".", color=color, ms=3,
                    label=f"{name}: simulation d = 1000")
    a2.set(xlabel="step t", ylabel="error", yscale="log", title=args.problem +
           ", alpha 3, lam 0.05")
    a2.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / f"schedule-{args.problem}.png", dpi=120)
    write(f"schedule-{args.problem}.json", dict(problem=args.problem,
        device=str(jax.devices()[0]), gradients=rows,
        tuning=dict(steps=steps, grid=grid.tolist(), grid_values=values.tolist(),
                    best_constant=float(grid[best]), best_constant_value=float(values[best]),
                    tuned_value=float(res.best_value), tune_seconds=t_tune,
                    schedule=schedule.tolist(),
                    simulation={k: [float(v.error[-1]), float(v.error_se[-1])]
                                for k, v in sims.items()},
                    simulation_runs={k: v.tolist() for k, v in runs.items()},
                    dmft={k: [float(v.error[-1]), float(v.error_se[-1])]
                          for k, v in dmft.items()}),
        peak_rss_mb=peak_rss_mb()))


if __name__ == "__main__":
    main()
