"""Reverse-mode gradients through the DMFT: a per-step step-size schedule tuned with optax.

Side by side, for T = 25, 50, 100 steps of regularised Wirtinger flow (alpha 3, noise 0.2,
lam 0.05, M = 1000 samples): the time and the compiled working memory of one gradient of
the final error over all T step sizes, by reverse mode (`reverse_mode=True`: sqrt(T)
checkpointed blocks) and by forward mode (`jax.jacfwd`, one tangent per step size).

Then the tuning (T = 20 or 50): the best constant step of a grid against a schedule of
one step size per step tuned by adam through reverse mode, the tuned schedule checked
with a fresh DMFT key and with the simulator (d = 1000, 8 seeds, the same data for both
schedules). `--problem wirtinger` (default, T = 20; the objective is one DMFT replica of
M = 1000 samples) or `--problem least-squares` (T = 50 step sizes on ill-conditioned ridge
least squares, alpha 1.5, lam 0.001, noiseless: the DMFT is exact there, so the tuned
schedule is also checked against the Marchenko-Pastur closed form and Chebyshev's steps,
and against the simulator at d = 1000 and 4000). Writes
`benchmarks/results/schedule-<problem>.json` and `.png`.

    python benchmarks/bench_schedule.py [--problem wirtinger|least-squares] [--no-timing]
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

from _common import RESULTS, fmt, peak_rss_mb, timeit, write  # noqa: E402

import dmftjax as dj  # noqa: E402

WIRTINGER = dj.Problem(
    dj.PhaseRetrieval(0.2), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
)
LEAST_SQUARES = dj.Problem(
    dj.LinearModel(0.0), dj.SquareLoss(), alpha=1.5, regulariser=dj.Ridge(0.001)
)
# per problem: the start, the tuned horizon, the DMFT samples of the objective, the step
# grid of the best constant, adam's learning rate and steps, the spread of the start
CASES = {
    # T = 20: beyond about 25 steps the DMFT's pathwise derivatives stop following the
    # smooth trend (innovation ratio < 1e-6, see dmft_replica), printed below per T
    "wirtinger": dict(
        problem=WIRTINGER,
        init=dj.InformedInit(0.5, 1.0),
        steps=20,
        m=1000,
        grid=(0.01, 0.2, 9),
        lr=0.05,
        adam_steps=40,
        spread=0.0,
    ),
    # ill-conditioned ridge least squares (condition number ~ 500): the DMFT is exact here
    # on any number of whitened samples, so 64 suffice. The final error is symmetric in the
    # step sizes (a product of commuting factors), so adam starts from a spread-out start
    # (log steps + N(0, 1); on the closed form, 5 of 5 such starts
    # reach < 1.5e-5 in 1000 adam steps, against 4e-3 for the best constant step) instead of the
    # symmetric point of the constant step
    "least-squares": dict(
        problem=LEAST_SQUARES,
        init=dj.InformedInit(0.0, 1.0),
        steps=50,
        m=64,
        grid=(0.1, 0.45, 23),
        lr=0.05,
        adam_steps=1000,
        spread=1.0,
    ),
}
KEY = jax.random.key(21)


def final_error(steps, reverse, problem=WIRTINGER, init=CASES["wirtinger"]["init"], m=1000):
    def f(log_eta):
        alg = dj.GradientDescent(jnp.exp(log_eta), steps)
        obs, _ = dj.dmft_replica(problem, alg, init, key=KEY, num_samples=m, reverse_mode=reverse)
        return obs["error"][-1]

    return f


def sig(values):
    return "[" + " ".join(f"{v:.3g}" for v in values) + "]"


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
        row = dict(
            steps=steps,
            value_s=t_val,
            reverse_s=t_rev,
            forward_s=t_fwd,
            value_temp_mb=temp_mb(final_error(steps, False), x),
            reverse_temp_mb=temp_mb(rev, x),
            forward_temp_mb=temp_mb(fwd, x),
            max_rel_diff=float(np.max(np.abs(g_rev - g_fwd)) / np.max(np.abs(g_fwd))),
        )
        _, ker = dj.dmft_replica(
            WIRTINGER,
            dj.GradientDescent(0.03, steps),
            CASES["wirtinger"]["init"],
            key=KEY,
            num_samples=1000,
        )
        inn = np.abs(np.asarray(ker["innovation"]))
        row["innovation_ratio"] = float(inn[inn > 0].min() / inn.max())
        rows.append(row)
        print(
            f"T = {steps:3d}  value {fmt(t_val)}  reverse {fmt(t_rev)}  forward {fmt(t_fwd)}"
            f"  temp MB: value {row['value_temp_mb']:.1f} reverse {row['reverse_temp_mb']:.1f}"
            f" forward {row['forward_temp_mb']:.1f}  |rev - fwd| / |fwd| "
            f"{row['max_rel_diff']:.1e}  innovation ratio {row['innovation_ratio']:.1e}"
        )

    case = CASES[args.problem]
    problem, init, steps, m = case["problem"], case["init"], case["steps"], case["m"]
    f = final_error(steps, True, problem, init, m)
    grid = np.exp(np.linspace(np.log(case["grid"][0]), np.log(case["grid"][1]), case["grid"][2]))
    values = np.asarray(
        jax.jit(jax.vmap(lambda e: f(jnp.full(steps, jnp.log(e)))))(jnp.asarray(grid))
    )
    best = int(np.nanargmin(values))
    start = jnp.log(grid[best]) + case["spread"] * jax.random.normal(jax.random.key(5), (steps,))
    grad_mb = temp_mb(jax.grad(f), start)
    t0 = time.perf_counter()
    res = dj.tune(
        f, start, optimizer=optax.adam(case["lr"]), steps=case["adam_steps"], progress=False
    )
    t_tune = time.perf_counter() - t0
    schedule = np.exp(np.asarray(res.best_params))
    schedules = (("tuned", jnp.asarray(schedule)), ("constant", grid[best]))
    dims = (1000, 4000) if args.problem == "least-squares" else (1000,)
    sims = {
        (name, d): dj.simulate(
            problem,
            dj.GradientDescent(s, steps),
            init,
            dim=d,
            num_seeds=8,
            key=jax.random.key(22),
            test_rows=0,
        )
        for name, s in schedules
        for d in dims
    }
    dmft = {
        name: dj.solve_dmft(
            problem,
            dj.GradientDescent(s, steps),
            init,
            num_samples=4000,
            num_replicas=8,
            key=jax.random.key(23),
        )
        for name, s in schedules
    }
    exact = {}
    if args.problem == "least-squares":
        # the closed form (Marchenko-Pastur, _exact.linear_method_theory) for both
        # schedules, and Chebyshev's steps on the support as a reference
        from dmftjax._exact import linear_method_theory

        def closed_form(s):
            alg = dj.GradientDescent(jnp.broadcast_to(jnp.asarray(s), (steps,)), steps)
            out = linear_method_theory(
                problem.alpha,
                alg.coefficients(problem),
                init.overlap,
                init.norm,
                problem.model.noise,
            )
            return float(out["error"][-1])

        exact = {name: closed_form(s) for name, s in schedules}
        a, lam = problem.alpha, problem.regulariser.lam
        lo, hi = a * (1 - a**-0.5) ** 2 + lam, a * (1 + a**-0.5) ** 2 + lam
        k = np.arange(1, steps + 1)
        cheb = 1 / ((hi + lo) / 2 + (hi - lo) / 2 * np.cos((2 * k - 1) * np.pi / (2 * steps)))
        exact["chebyshev (largest step first)"] = closed_form(np.sort(cheb)[::-1].copy())
        exact["ridge limit (T = 5000)"] = float(
            linear_method_theory(
                a,
                dj.GradientDescent(1 / hi, 5000).coefficients(problem),
                init.overlap,
                init.norm,
                problem.model.noise,
            )["error"][-1]
        )
        for name, v in exact.items():
            print(f"  closed form (d = infinity) {name:32s} {v:.6e}")
    print(
        f"{args.problem}, T = {steps}: best constant step {grid[best]:.4g} -> error "
        f"{values[best]:.6g}; tuned schedule ({steps} parameters, {case['adam_steps']} "
        f"adam steps, {t_tune:.0f} s, gradient's compiled working memory {grad_mb:.1f} MB)"
        f" -> {res.best_value:.6g} (range of the steps {schedule.min():.3g} .. "
        f"{schedule.max():.3g})"
    )
    for d in dims:
        runs = {name: np.asarray(sims[name, d].info["final_error_runs"]) for name, _ in schedules}
        print(f"  simulation d = {d}, per seed (same data): tuned {sig(runs['tuned'])}")
        print(f"  {'':33s}constant {sig(runs['constant'])}")
        print(
            f"  diverged seeds: tuned {sims['tuned', d].info['num_diverged']}, constant "
            f"{sims['constant', d].info['num_diverged']}"
        )
    print(
        f"  DMFT replicas diverged (fresh key): tuned {dmft['tuned'].info['num_diverged']}, "
        f"constant {dmft['constant'].info['num_diverged']}"
    )
    for name, _ in schedules:
        line = (
            f"  {name:8s} DMFT (fresh key) {float(dmft[name].error[-1]):.4g} "
            f"+- {float(dmft[name].error_se[-1]):.2g}"
        )
        for d in dims:
            line += (
                f"   simulation d = {d}, 8 seeds {float(sims[name, d].error[-1]):.4g} "
                f"+- {float(sims[name, d].error_se[-1]):.2g}"
            )
        print(line)
    from dmftjax._validate import available_memory

    have = available_memory() / 2**20
    print(
        f"peak RSS {peak_rss_mb():.0f} MB of the machine's {have:.0f} MB "
        f"({100 * peak_rss_mb() / have:.1f}%)"
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(schedule, ".-", label="tuned (reverse mode, adam)")
    a1.axhline(grid[best], color="k", ls="--", label=f"best constant {grid[best]:.3g}")
    a1.set(xlabel="step t", ylabel="step size", title="schedule", yscale="log")
    a1.legend(fontsize=8)
    for name, color in (("tuned", "C0"), ("constant", "k")):
        a2.plot(np.asarray(dmft[name].error), color=color, label=f"{name}: DMFT")
        for d, marker in zip(dims, ".x"):
            a2.errorbar(
                np.arange(steps + 1),
                np.asarray(sims[name, d].error),
                yerr=2 * np.asarray(sims[name, d].error_se),
                fmt=marker,
                color=color,
                ms=3,
                label=f"{name}: simulation d = {d} (2 s.e.)",
            )
    a2.set(
        xlabel="step t",
        ylabel="error",
        yscale="log",
        title=f"{args.problem}, alpha {problem.alpha:g}, lam {problem.regulariser.lam:g}",
    )
    a2.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / f"schedule-{args.problem}.png", dpi=120)
    write(
        f"schedule-{args.problem}.json",
        dict(
            problem=args.problem,
            device=str(jax.devices()[0]),
            gradients=rows,
            tuning=dict(
                steps=steps,
                grid=grid.tolist(),
                grid_values=values.tolist(),
                best_constant=float(grid[best]),
                best_constant_value=float(values[best]),
                tuned_value=float(res.best_value),
                tune_seconds=t_tune,
                schedule=schedule.tolist(),
                gradient_temp_mb=grad_mb,
                closed_form=exact,
                simulation={
                    f"{k}, d = {d}": [float(v.error[-1]), float(v.error_se[-1])]
                    for (k, d), v in sims.items()
                },
                simulation_runs={
                    f"{k}, d = {d}": np.asarray(v.info["final_error_runs"]).tolist()
                    for (k, d), v in sims.items()
                },
                dmft={k: [float(v.error[-1]), float(v.error_se[-1])] for k, v in dmft.items()},
            ),
            peak_rss_mb=peak_rss_mb(),
        ),
    )


if __name__ == "__main__":
    main()
