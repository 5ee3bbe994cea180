import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    return jax.random.key(20251129)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Each test module compiles its own engines; dropping them afterwards keeps the
    memory of one long test session bounded."""
    yield
    jax.clear_caches()
