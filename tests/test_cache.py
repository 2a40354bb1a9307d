"""The content-addressed cache: keys, atomic writes, LRU eviction under a size cap."""

from __future__ import annotations

import os
import time

from quant_core.cache import ArtifactCache, cache_key, content_sha256


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
