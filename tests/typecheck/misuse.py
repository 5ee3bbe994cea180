"""Wrong uses of the public API that the type check must catch (tests/test_lint.py):
every line marked `# E` is an error, and no other line is."""

import jax

import dmftjax as dj

key = jax.random.key(0)
problem = dj.Problem(dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=3.0)
alg = dj.GradientDescent(0.05, 10)
init = dj.InformedInit(0.5, 1.0)

dj.solve_dmft(problem, alg, init, num_samples="64", key=key)  # E
wrong: dj.FixedPoint = dj.solve_dmft(problem, alg, init, num_samples=64, key=key)  # E
dj.fixed_point(problem, num_nodes=1.5)  # E
dj.fixed_point(problem, branch="nearest")  # E
dj.solve_dmft(problem, alg, init, num_samples=64, key=key, spectral_method="power")  # E
dj.simulate(problem, alg, init, dim=50.0, num_seeds=2, key=key)  # E
dj.spectral_theory(problem, dj.WirtingerLoss())  # E
dj.weak_recovery_threshold(dj.WirtingerLoss(), dj.Trimmed(4.0))  # E
dj.sweep(problem, alg, init, alpha=[2.0], key=key, batch_size="8")  # E
cos2: str = dj.spectral_theory(problem, dj.Trimmed(4.0))  # E
