"""A catalogue of bad inputs across the public entry points, each run in this process:
how many are refused with a clear ValueError/TypeError, accepted, or fail obscurely.

    python benchmarks/bad_inputs.py          # prints the table, writes results/bad-inputs.json

The property-based suite (tests/test_reliability.py) generates many more; this table is the
human-readable record (docs/reliability.md)."""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import dmftjax as dj  # noqa: E402

KEY = jax.random.key(0)


def P(alpha=3.0, noise=0.1, lam=0.05):
    return dj.Problem(
        dj.PhaseRetrieval(noise), dj.WirtingerLoss(), alpha=alpha, regulariser=dj.Ridge(lam)
    )


GD, INIT = dj.GradientDescent(0.05, 10), dj.InformedInit(0.5, 1.0)
SP = dict(num_samples=64, key=KEY, progress=False)


def catalogue():
    fp = dj.fixed_point(P())
    a, t = jnp.ones((20, 5)), jnp.ones(20)
    nan, inf = math.nan, math.inf
    return {
        # constructors: wrong types, NaN and inf, ranges, bools
        "Problem(alpha=True)": lambda: dj.Problem(dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), True),
        "Problem(alpha=nan)": lambda: P(alpha=nan),
        "Problem(alpha=-1)": lambda: P(alpha=-1.0),
        "Problem(alpha='3')": lambda: dj.Problem(dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), "3"),
        "Problem(alpha=[2, 3])": lambda: dj.Problem(
            dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), [2.0, 3.0]
        ),
        "Ridge(lam=True)": lambda: P(lam=True),
        "Ridge(lam=-0.1)": lambda: P(lam=-0.1),
        "PhaseRetrieval(noise=inf)": lambda: P(noise=inf),
        "LinearModel + LogisticLoss": lambda: dj.Problem(
            dj.LinearModel(0.1), dj.LogisticLoss(), 3.0
        ),
        "Problem(loss, model) swapped": lambda: dj.Problem(
            dj.WirtingerLoss(), dj.PhaseRetrieval(), 3.0
        ),
        "GradientDescent(True, 5)": lambda: dj.GradientDescent(True, 5),
        "GradientDescent(np.True_, 5)": lambda: dj.GradientDescent(np.bool_(True), 5),
        "GradientDescent(0.1, 2.5)": lambda: dj.GradientDescent(0.1, 2.5),
        "GradientDescent(0.1, 0)": lambda: dj.GradientDescent(0.1, 0),
        "GradientDescent(nan, 5)": lambda: dj.GradientDescent(nan, 5),
        "GradientDescent(schedule of wrong length)": lambda: dj.GradientDescent(jnp.ones(3), 5),
        "HeavyBall(momentum=1)": lambda: dj.HeavyBall(0.1, 1.0, 5),
        "Nesterov(momentum=-0.1)": lambda: dj.Nesterov(0.1, -0.1, 5),
        "InformedInit(True)": lambda: dj.InformedInit(True),
        "InformedInit(overlap=1e154)": lambda: dj.InformedInit(1e154, 2.0),
        "InformedInit(0.9, 0.5)": lambda: dj.InformedInit(0.9, 0.5),
        "Trimmed(nan)": lambda: dj.Trimmed(nan),
        "Trimmed(-1)": lambda: dj.Trimmed(-1.0),
        # engines: sizes, keys, enums, shapes
        "solve_dmft(num_samples=10**10)": lambda: dj.solve_dmft(
            P(), GD, INIT, num_samples=10**10, key=KEY
        ),
        "solve_dmft(num_samples=10**8, num_replicas=64)": lambda: dj.solve_dmft(
            P(), GD, INIT, num_samples=10**8, num_replicas=64, key=KEY
        ),
        "solve_dmft(num_samples=100.0)": lambda: dj.solve_dmft(
            P(), GD, INIT, num_samples=100.0, key=KEY
        ),
        "solve_dmft(num_samples=True)": lambda: dj.solve_dmft(
            P(), GD, INIT, num_samples=True, key=KEY
        ),
        "solve_dmft(key=3)": lambda: dj.solve_dmft(P(), GD, INIT, num_samples=200, key=3),
        "solve_dmft(key=None)": lambda: dj.solve_dmft(P(), GD, INIT, num_samples=200, key=None),
        "solve_dmft(key=batch of 2)": lambda: dj.solve_dmft(
            P(), GD, INIT, num_samples=200, key=jax.random.split(KEY, 2)
        ),
        "solve_dmft(estimator='stein')": lambda: dj.solve_dmft(
            P(), GD, INIT, num_samples=200, key=KEY, estimator="stein"
        ),
        "solve_dmft(algorithm, problem swapped)": lambda: dj.solve_dmft(
            GD, P(), INIT, num_samples=200, key=KEY
        ),
        "solve_dmft 10**6 steps, 1000 samples": lambda: dj.solve_dmft(
            P(), dj.GradientDescent(0.05, 10**6), INIT, num_samples=1000, key=KEY
        ),
        "simulate(dim=10**5)": lambda: dj.simulate(P(), GD, INIT, dim=10**5, num_seeds=2, key=KEY),
        "simulate(num_seeds=10**10)": lambda: dj.simulate(
            P(), GD, INIT, dim=50, num_seeds=10**10, key=KEY
        ),
        "spectral_simulation(dim=10**5)": lambda: dj.spectral_simulation(
            P(), dj.Trimmed(4.0), dim=10**5, num_seeds=2, key=KEY
        ),
        "spectral_simulation(num_seeds=10**10)": lambda: dj.spectral_simulation(
            P(), dj.Trimmed(4.0), dim=50, num_seeds=10**10, key=KEY
        ),
        "hessian_check(num_seeds=10**10)": lambda: dj.hessian_check(
            P(), GD, INIT, dim=50, num_seeds=10**10, key=KEY
        ),
        "tune_step_size(num_samples=10**10)": lambda: dj.tune_step_size(
            P(), INIT, eta0=0.05, horizon=10, num_samples=10**10, key=KEY
        ),
        "tune_algorithm(num_samples=10**10)": lambda: dj.tune_algorithm(
            P(), GD, INIT, num_samples=10**10, key=KEY
        ),
        "simulate(dim=1)": lambda: dj.simulate(P(), GD, INIT, dim=1, num_seeds=2, key=KEY),
        "simulate(alpha=0.01, dim=20)": lambda: dj.simulate(
            P(alpha=0.01), GD, INIT, dim=20, num_seeds=2, key=KEY
        ),
        "simulate(memory_budget=-1)": lambda: dj.simulate(
            P(), GD, INIT, dim=50, num_seeds=2, key=KEY, memory_budget=-1.0
        ),
        "simulate(memory_budget=nan)": lambda: dj.simulate(
            P(), GD, INIT, dim=50, num_seeds=2, key=KEY, memory_budget=nan
        ),
        "simulate(test_rows=-3)": lambda: dj.simulate(
            P(), GD, INIT, dim=50, num_seeds=2, key=KEY, test_rows=-3
        ),
        "simulate(init='informed')": lambda: dj.simulate(
            P(), GD, "informed", dim=50, num_seeds=2, key=KEY
        ),
        "fixed_point(num_nodes=10**9)": lambda: dj.fixed_point(P(), num_nodes=10**9),
        "fixed_point(num_nodes=2)": lambda: dj.fixed_point(P(), num_nodes=2),
        "fixed_point(branch='best')": lambda: dj.fixed_point(P(), branch="best"),
        "hessian_edges(tail=nan)": lambda: dj.hessian_edges(P(), fp, tail=nan),
        "hessian_edges(fp='fp')": lambda: dj.hessian_edges(P(), "fp"),
        "hessian_check(dim=10**6)": lambda: dj.hessian_check(P(), GD, INIT, dim=10**6, key=KEY),
        "hessian_check(dim=True)": lambda: dj.hessian_check(P(), GD, INIT, dim=True, key=KEY),
        "weak_recovery_threshold(noise=-1)": lambda: dj.weak_recovery_threshold(
            dj.PhaseRetrieval(noise=-1.0), dj.Trimmed(4)
        ),
        "weak_recovery_threshold(bracket=(0, -1))": lambda: dj.weak_recovery_threshold(
            dj.PhaseRetrieval(0.1), dj.Trimmed(4), bracket=(0.0, -1.0)
        ),
        "spectral_theory(preprocessing='trimmed')": lambda: dj.spectral_theory(P(), "trimmed"),
        "top_eigenpair(NaN entry)": lambda: dj.top_eigenpair(a.at[0, 0].set(jnp.nan), t, key=KEY),
        "top_eigenpair(shapes mismatch)": lambda: dj.top_eigenpair(a, jnp.ones(3), key=KEY),
        "measured_rate(NaN curve)": lambda: dj.measured_rate(
            np.array([1.0, 0.5, nan, 0.1, 0.05, 0.01])
        ),
        "measured_rate(diverged curve)": lambda: dj.measured_rate(np.logspace(0, 60, 20)),
        "grid_search(NaN grid point)": lambda: dj.grid_search(lambda x: x**2, [1.0, nan, 2.0]),
        "grid_search(all-NaN objective)": lambda: dj.grid_search(lambda x: nan, [1.0, 2.0]),
        "sweep(num_samples=10**10)": lambda: dj.sweep(
            P(), GD, INIT, alpha=[2.0, 3.0], num_samples=10**10, key=KEY, progress=False
        ),
        "sweep(2-d alpha axis)": lambda: dj.sweep(
            P(), GD, INIT, alpha=[[2.0, 3.0], [4.0, 5.0]], **SP
        ),
        "sweep(devices='tpu')": lambda: dj.sweep(
            P(), GD, INIT, alpha=[2.0, 3.0], devices="tpu", **SP
        ),
        "sweep(devices=[1])": lambda: dj.sweep(P(), GD, INIT, alpha=[2.0, 3.0], devices=[1], **SP),
        "sweep(batch_size=0)": lambda: dj.sweep(
            P(), GD, INIT, alpha=[2.0, 3.0], batch_size=0, **SP
        ),
        "tune_step_size(estimator='tangnet')": lambda: dj.tune_step_size(
            P(), INIT, eta0=0.05, horizon=10, estimator="tangnet", num_samples=64, key=KEY
        ),
        "tune_step_size(metric='mse')": lambda: dj.tune_step_size(
            P(), INIT, eta0=0.05, horizon=10, metric="mse", num_samples=64, key=KEY
        ),
        "plot_tuning([{'x': 1}])": lambda: dj.plot_tuning([{"x": 1}]),
        "plot_tuning({})": lambda: dj.plot_tuning({}),
    }


def main():
    rows, counts = [], {"refused": 0, "accepted": 0, "obscure": 0}
    for name, call in catalogue().items():
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = call()
            kind, message = "accepted", type(out).__name__
        except (ValueError, TypeError) as err:
            kind, message = "refused", f"{type(err).__name__}: {err}"
        except Exception as err:  # noqa: BLE001 - what we are counting
            kind, message = "obscure", f"{type(err).__name__}: {err}"
        seconds = time.perf_counter() - t0
        counts[kind] += 1
        rows.append(
            dict(
                input=name,
                outcome=kind,
                seconds=round(seconds, 3),
                message=message.splitlines()[0][:300],
            )
        )
        print(f"{kind:9s} {seconds:6.2f} s  {name}: {message.splitlines()[0][:110]}")
    print(f"\n{len(rows)} inputs: {counts}")
    out = Path(__file__).parent / "results" / "bad-inputs.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(counts=counts, rows=rows, jax=jax.__version__), indent=1))
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
