"""The content-addressed cache: keys, atomic writes, LRU eviction under a size cap."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest

from quant_core import cache as cache_module
from quant_core.cache import ArtifactCache, MissingModelError, cache_key, content_sha256


def test_keys_depend_on_every_part_and_not_on_dict_order():
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})
    assert cache_key("x", 1) != cache_key("x", 2)
    assert len(cache_key("x")) == 64


def test_folder_hash_covers_names_and_bytes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.bin").write_bytes(b"1")
    first = content_sha256(tmp_path / "a")
    (tmp_path / "a" / "f.bin").write_bytes(b"2")
    second = content_sha256(tmp_path / "a")
    (tmp_path / "a" / "f.bin").rename(tmp_path / "a" / "g.bin")
    assert len({first, second, content_sha256(tmp_path / "a")}) == 3


def test_round_trip_and_corrupt_json(tmp_path):
    cache = ArtifactCache(tmp_path)
    cache.put_json("results", "ab" * 32, {"x": [1, 2]})
    assert cache.get_json("results", "ab" * 32) == {"x": [1, 2]}
    cache.path("results", "cd" * 32, ".json").parent.mkdir(parents=True, exist_ok=True)
    cache.path("results", "cd" * 32, ".json").write_text("{not json")
    assert cache.get_json("results", "cd" * 32) is None
    assert not list(tmp_path.rglob(".tmp-*"))


def test_least_recently_used_entries_are_evicted_over_the_cap(tmp_path):
    cache = ArtifactCache(tmp_path, max_bytes=100_000)
    keys = [cache_key(i) for i in range(5)]
    old = time.time() - 3600
    for i, key in enumerate(keys[:4]):
        path = cache.put_bytes("variants", key, bytes(3000))
        os.utime(path, (old + i, old + i))  # written an hour ago, oldest first
    cache.max_bytes = 10_000
    cache.get_bytes("variants", keys[0])  # a read makes the oldest the most recent
    cache.put_bytes("variants", keys[4], bytes(3000))  # 15 000 bytes > cap: evict
    present = [cache.get_bytes("variants", k) is not None for k in keys]
    assert present == [True, False, False, True, True]
    assert cache.size_bytes() <= 10_000


def test_recent_entries_survive_even_over_the_cap(tmp_path):
    cache = ArtifactCache(tmp_path, max_bytes=1000)
    for i in range(3):
        cache.put_bytes("variants", cache_key(i), bytes(2000))
    assert cache.size_bytes() == 6000  # all used within the last ten minutes
    assert cache.evict(min_age_s=0) >= 5000 and cache.size_bytes() <= 1000


def count_scans(monkeypatch, cache: ArtifactCache) -> list[int]:
    """Wraps the cache's folder scan; the returned list grows by one per scan."""
    calls: list[int] = []
    scan = cache._scan  # pylint: disable=protected-access

    def counted():
        calls.append(1)
        return scan()

    monkeypatch.setattr(cache, "_scan", counted)
    return calls


def put_old(cache: ArtifactCache, key: str, size: int, age_s: float) -> None:
    """Writes an entry and makes it look last used `age_s` seconds ago."""
    path = cache.put_bytes("variants", key, bytes(size))
    then = time.time() - age_s
    os.utime(path, (then, then))


def test_writes_below_the_cap_do_not_scan(tmp_path, monkeypatch):
    cache = ArtifactCache(tmp_path, max_bytes=100_000)
    scans = count_scans(monkeypatch, cache)
    for i in range(20):
        cache.put_bytes("variants", cache_key(i), bytes(3000))
    assert len(scans) == 1  # the first write measures the folder once
    assert cache.size_bytes() == 60_000


def test_crossing_the_cap_evicts_least_recently_used_down_to_the_cap(tmp_path, monkeypatch):
    cache = ArtifactCache(tmp_path, max_bytes=10_000)
    scans = count_scans(monkeypatch, cache)
    keys = [cache_key(i) for i in range(5)]
    for i, key in enumerate(keys[:3]):
        put_old(cache, key, 3000, age_s=3600 - i)  # oldest first
    assert len(scans) == 1
    cache.get_bytes("variants", keys[1])  # a read makes it the most recent
    put_old(cache, keys[3], 3000, age_s=60)  # 12 000 bytes > cap
    assert len(scans) == 2
    assert [cache.path("variants", k).exists() for k in keys[:4]] == [False, True, True, True]
    put_old(cache, keys[4], 3000, age_s=30)
    assert [cache.path("variants", k).exists() for k in keys] == [False, True, False, True, True]
    assert cache.size_bytes() <= 10_000


def test_recent_entries_over_the_cap_do_not_cause_a_scan_per_write(tmp_path, monkeypatch):
    cache = ArtifactCache(tmp_path, max_bytes=1000, rescan_writes=5)
    scans = count_scans(monkeypatch, cache)
    for i in range(9):
        cache.put_bytes("variants", cache_key(i), bytes(2000))
    assert len(scans) == 2  # the first write, then the periodic rescan at the 5th write after it
    assert cache.size_bytes() == 18_000  # nothing could go: all used within ten minutes


@pytest.mark.parametrize("trigger", ["writes", "seconds"])
def test_two_instances_on_one_folder_end_under_the_cap(tmp_path, monkeypatch, trigger):
    clock = [1000.0]
    monkeypatch.setattr(cache_module, "time", SimpleNamespace(time=time.time, monotonic=lambda: clock[0]))
    a, b = (ArtifactCache(tmp_path, max_bytes=10_000, rescan_writes=2 if trigger == "writes" else 100)
            for _ in range(2))
    keys = [cache_key("shared", i) for i in range(5)]
    put_old(a, keys[0], 3000, age_s=3600)  # a measures the folder: 3000 bytes
    put_old(b, keys[1], 3000, age_s=3500)  # b measures 6000
    put_old(b, keys[2], 3000, age_s=3400)  # b estimates 9000
    put_old(a, keys[3], 3000, age_s=3300)  # a estimates 6000, but the folder holds 12 000
    assert a.size_bytes() == 12_000  # over the cap until the next scan
    if trigger == "seconds":
        clock[0] += 61.0  # past the periodic rescan
    put_old(a, keys[4], 100, age_s=60)  # a's periodic scan finds what b wrote
    assert [a.path("variants", k).exists() for k in keys] == [False, True, True, True, True]
    assert a.size_bytes() == 9100 and b.size_bytes() <= 10_000


def test_models_are_stored_and_fetched_by_content_key(tmp_path):
    cache = ArtifactCache(tmp_path)
    sha = cache.put_model(b"model-bytes")
    assert sha == __import__("hashlib").sha256(b"model-bytes").hexdigest()
    assert cache.has_model(sha) and cache.model_bytes(sha) == b"model-bytes"
    assert cache.put_model(b"model-bytes") == sha and len(list((tmp_path / "models").rglob("*.tflite"))) == 1
    cache.path("models", sha, ".tflite").write_bytes(b"tampered")
    with pytest.raises(MissingModelError, match="damaged"):
        cache.model_bytes(sha)


def test_kept_models_outlive_eviction_and_unkept_ones_do_not(tmp_path):
    cache = ArtifactCache(tmp_path / "cache", max_bytes=1000)
    kept_sha, other_sha = cache.put_model(b"k" * 800), cache.put_model(b"o" * 800)
    kept = cache.keep([kept_sha], tmp_path / "session" / "models")
    cache.max_bytes = 0
    assert cache.evict(min_age_s=0) == 1600  # both of the cache's files go
    assert not cache.has_model(kept_sha) and not cache.has_model(other_sha)
    assert kept.model_bytes(kept_sha) == b"k" * 800  # the session's link still holds the bytes
    with pytest.raises(MissingModelError, match="no longer stored; run the comparison again"):
        cache.model_bytes(other_sha)
    with pytest.raises(MissingModelError, match="removed before it could be kept"):
        cache.keep([other_sha], tmp_path / "late")


def test_keeping_links_instead_of_copying_and_lets_earlier_models_go(tmp_path):
    cache = ArtifactCache(tmp_path / "cache")
    first, second = cache.put_model(b"first"), cache.put_model(b"second")
    folder = tmp_path / "session"
    cache.keep([first], folder)
    assert os.path.samefile(folder / f"{first}.tflite", cache.path("models", first, ".tflite"))
    cache.keep([second], folder)  # a new result replaces what the session kept
    assert sorted(p.name for p in folder.iterdir()) == [f"{second}.tflite"]
