"""The embedded default dataset: made once into the cache, reused, safe under concurrent first use."""

from __future__ import annotations

import threading

import pytest

from ubdiff_onnx.data import embedded
from ubdiff_onnx.data.embedded import EMBEDDED_FAMILY, cache_dir, embedded_dataset
from ubdiff_onnx.data.openfwi import open_folder
from ubdiff_onnx.data.synth import read_metadata


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UBDIFF_ONNX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_follows_the_environment(cache, monkeypatch):
    assert cache_dir() == cache
    monkeypatch.delenv("UBDIFF_ONNX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert str(cache_dir()) == "/somewhere/ubdiff-onnx"


def test_generated_once_then_reused(cache, monkeypatch):
    calls = []
    real = embedded.synthesize
    monkeypatch.setattr(embedded, "synthesize", lambda *a, **k: calls.append(a) or real(*a, **k))
    path = embedded_dataset(samples=2, workers=1, progress=False)
    assert path.parent == cache and len(open_folder(path)) == 2
    assert read_metadata(path)["family"] == EMBEDDED_FAMILY
    assert embedded_dataset(samples=2, workers=1, progress=False) == path
    assert len(calls) == 1


def test_concurrent_first_use_generates_once(cache, monkeypatch):
    calls = []
    real = embedded.synthesize
    monkeypatch.setattr(embedded, "synthesize", lambda *a, **k: calls.append(a) or real(*a, **k))
    results = []
    threads = [threading.Thread(target=lambda: results.append(embedded_dataset(samples=1, workers=1, progress=False))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1] and len(calls) == 1
    assert sorted(p.name for p in cache.iterdir()) == [results[0].name, results[0].name + ".lock"]


def test_incomplete_folder_is_regenerated(cache):
    path = embedded.embedded_path(1)
    path.mkdir(parents=True)
    (path / "junk").write_text("half-written by an old version")
    assert embedded_dataset(samples=1, workers=1, progress=False) == path
    assert not (path / "junk").exists() and len(open_folder(path)) == 1
