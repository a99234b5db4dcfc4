"""train.py / eval.py's persistent compilation cache (efficientnet_jax/training/compile_cache.py)."""

import jax
import pytest

from efficientnet_jax.training import compile_cache

_KEYS = ("jax_compilation_cache_dir", "jax_compilation_cache_max_size")


@pytest.fixture
def no_cache_configured():
    """JAX as a fresh process sees it (no cache dir, no size limit); this folder's cache restored after."""
    saved = {k: getattr(jax.config, k) for k in _KEYS}
    jax.config.update("jax_compilation_cache_dir", None)
    jax.config.update("jax_compilation_cache_max_size", -1)
    yield
    for k, v in saved.items():
        jax.config.update(k, v)


def test_enable_creates_the_directory_and_bounds_its_size(no_cache_configured, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    got = compile_cache.enable("~/cache/jax")
    assert got == str(tmp_path / "cache" / "jax")
    assert (tmp_path / "cache" / "jax").is_dir()
    assert jax.config.jax_compilation_cache_dir == got
    assert jax.config.jax_compilation_cache_max_size == compile_cache.DEFAULT_MAX_BYTES


def test_a_cache_already_configured_wins(no_cache_configured, tmp_path):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "users"))
    jax.config.update("jax_compilation_cache_max_size", 123)
    assert compile_cache.enable(str(tmp_path / "ours")) == str(tmp_path / "users")
    assert not (tmp_path / "ours").exists()
    assert jax.config.jax_compilation_cache_max_size == 123


def test_empty_directory_leaves_the_cache_off(no_cache_configured):
    assert compile_cache.enable("") is None
    assert jax.config.jax_compilation_cache_dir is None


def test_a_directory_that_cannot_be_made_leaves_it_off(no_cache_configured, tmp_path):
    (tmp_path / "a_file").write_text("not a directory")
    assert compile_cache.enable(str(tmp_path / "a_file" / "cache")) is None
    assert jax.config.jax_compilation_cache_dir is None
