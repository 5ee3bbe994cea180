import gc
import os

import jax
import pytest

jax.config.update("jax_enable_x64", True)
# the command line turns on JAX's persistent compilation cache; the tests stay hermetic
# (tests/test_cli.py checks the cache in subprocesses with a directory of their own)
os.environ.setdefault("DMFTJAX_CACHE_DIR", "")


@pytest.fixture
def key():
    return jax.random.key(20251129)


def _mapped_regions() -> int:
    """How many memory maps this process holds (Linux; 0 elsewhere). Every compiled XLA
    executable holds some, and the kernel's limit (vm.max_map_count, 65530 by default)
    turns into a segmentation fault inside the compiler once a long session crosses it."""
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Each test module compiles its own engines; dropping them afterwards keeps the
    memory of one long test session bounded."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(autouse=True)
def _bound_compiled_code():
    """Within a module too: once the compiled code holds a third of the map limit."""
    yield
    if _mapped_regions() > 20000:
        jax.clear_caches()
        gc.collect()
