"""A content-addressed cache on disk: keys are hashes of everything that determines a value."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from stat import S_ISREG
from typing import Any, Protocol

from quant_core.config import config
from quant_core.errors import QuantError

_MIN_AGE_S = 600  # entries used in the last 10 minutes are kept even over the cap
# Other processes (worker subprocesses) write to the same folder unseen by this instance's
# running size estimate, so a full scan also runs after this many writes or seconds.
_RESCAN_WRITES = 64
_RESCAN_S = 60.0


MODELS = "models"  # .tflite files named by the sha256 of their bytes
_FULL_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # no space, over quota, over the file size limit
log = logging.getLogger(__name__)


class MissingModelError(QuantError):
    """A model file is no longer stored (the cache was cleaned) and nothing kept it."""


class CacheFullError(QuantError):
    """The cache folder's disk is full (or over a quota or file size limit): a model could not be stored."""


class ModelStore(Protocol):
    """Where a result's .tflite files are fetched by their content key (sha256 of the bytes)."""

    def model_bytes(self, sha256: str) -> bytes:
        """The model whose bytes hash to `sha256`; raises MissingModelError when it is gone."""
        ...


def _read_model(path: Path, sha256: str) -> bytes:
    """A stored model, checked against its content key."""
    try:
        data = path.read_bytes()
    except OSError:
        raise MissingModelError(f"the model file {sha256[:12]} is no longer stored; run the comparison again") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise MissingModelError(f"the model file {sha256[:12]} is damaged; run the comparison again")
    return data


class KeptModels:
    """Models kept for one owner (a web session) in its own folder: hard links to the cache's files.

    A link keeps the file's bytes alive when the cache later removes its own name for it,
    so what a live session shows stays downloadable; deleting the owner's folder (the
    session ended) releases them. Links cost no space while the cache still has the file.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def model_bytes(self, sha256: str) -> bytes:
        """The kept model with this content key."""
        return _read_model(self.folder / f"{sha256}.tflite", sha256)


def cache_key(*parts: Any) -> str:
    """sha256 of the canonical JSON of `parts` (dicts sorted, enums as values)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def content_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's files with their relative names."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as stream:
            while chunk := stream.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """$QUANT_CACHE_DIR, else ~/.cache/quant-workbench."""
    return config().cache_dir


class ArtifactCache:
    """Bytes and JSON stored under `root/<kind>/<key[:2]>/<key>`; writes are atomic.

    The cache holds at most `max_bytes`: least recently used entries (by modification time,
    refreshed on every read) are removed, sparing those used in the last ten minutes. A write
    only adds its size to a running estimate; the folder is scanned and evicted when the
    estimate passes the cap, and at least every `rescan_writes` writes or `rescan_s` seconds,
    because other processes sharing the folder also write to it. The cap can therefore be
    exceeded briefly, and is enforced at the next scan. Entries are named by content hashes
    only, never by who asked.
    """

    def __init__(self, root: Path | None = None, *, max_bytes: int | None = None,
                 rescan_writes: int = _RESCAN_WRITES, rescan_s: float = _RESCAN_S) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.max_bytes = max_bytes if max_bytes is not None else config().cache_max_mb * 1024 * 1024
        self.rescan_writes = rescan_writes
        self.rescan_s = rescan_s
        self._lock = threading.Lock()  # Streamlit reruns share one instance across threads
        self._estimate: int | None = None  # bytes at the last scan + bytes written since; None: never scanned
        self._pinned = False  # the last scan stayed over the cap: everything left was used recently
        self._writes_since_scan = 0
        self._last_scan = 0.0  # time.monotonic() of the last scan

    def path(self, kind: str, key: str, suffix: str = "") -> Path:
        """Where an entry lives (whether or not it exists)."""
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def get_bytes(self, kind: str, key: str, suffix: str = "") -> bytes | None:
        """The stored bytes, or None."""
        path = self.path(kind, key, suffix)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        os.utime(path)  # recency for eviction
        return data

    def put_bytes(self, kind: str, key: str, data: bytes, suffix: str = "") -> Path:
        """Stores bytes atomically; returns the path."""
        path = self.path(kind, key, suffix)
        try:
            self._write(path, data)
        except OSError as err:
            if err.errno not in _FULL_DISK:
                raise
            log.warning("cannot store %s in %s: %s", path.name, self.root, err.strerror)
            raise CacheFullError("no space left in the server's cache folder to store this request's models; "
                                 "ask the operator to free space there (QUANT_CACHE_DIR), then run it again") from None
        if self._scan_due(len(data)):
            self.evict()
        return path

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        """Writes a temporary file beside `path`, then renames it: readers never see half an entry."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def size_bytes(self) -> int:
        """Total size of the stored entries."""
        return sum(size for _, size, _ in self._scan())

    def evict(self, *, min_age_s: float = _MIN_AGE_S) -> int:
        """Scans the folder and removes least recently used entries until under max_bytes; returns bytes freed."""
        entries = self._scan()
        total = sum(size for _, size, _ in entries)
        freed = 0
        now = time.time()
        for mtime, size, path in sorted(entries, key=lambda e: e[0]):
            if total - freed <= self.max_bytes or now - mtime < min_age_s:
                break
            path.unlink(missing_ok=True)
            freed += size
        with self._lock:
            self._estimate = total - freed
            self._pinned = total - freed > self.max_bytes
            self._writes_since_scan = 0
            self._last_scan = time.monotonic()
        return freed

    def _scan_due(self, written: int) -> bool:
        """Adds a write to the running estimate; True when a full scan and eviction are due."""
        with self._lock:
            if self._estimate is None:
                return True
            self._estimate += written
            self._writes_since_scan += 1
            over_cap = self._estimate > self.max_bytes and not self._pinned
            return (over_cap or self._writes_since_scan >= self.rescan_writes
                    or time.monotonic() - self._last_scan >= self.rescan_s)

    def _scan(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every stored file (temporary files of unfinished writes excluded)."""
        found: list[tuple[float, int, Path]] = []
        if not self.root.is_dir():
            return found
        for path in self.root.rglob("*"):
            if path.name.startswith(".tmp-"):
                continue
            try:
                stat = path.stat()
            except OSError:  # removed by another process meanwhile
                continue
            if S_ISREG(stat.st_mode):
                found.append((stat.st_mtime, stat.st_size, path))
        return found

    def put_model(self, data: bytes) -> str:
        """Stores a .tflite under its content key; returns the key (sha256 of the bytes)."""
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.has_model(sha256):
            self.put_bytes(MODELS, sha256, data, ".tflite")
        return sha256

    def has_model(self, sha256: str) -> bool:
        """True when the model is stored (and marks it as just used)."""
        path = self.path(MODELS, sha256, ".tflite")
        try:
            os.utime(path)
        except OSError:
            return False
        return True

    def model_bytes(self, sha256: str) -> bytes:
        """The stored model with this content key; MissingModelError when it was removed."""
        data = _read_model(self.path(MODELS, sha256, ".tflite"), sha256)
        os.utime(self.path(MODELS, sha256, ".tflite"))
        return data

    def keep(self, sha256s: list[str], folder: Path) -> KeptModels:
        """Keeps these models in `folder` (an owner's private folder), whatever the cache removes later.

        The folder then holds exactly these models (earlier ones are let go). Hard links
        where the filesystem allows, copies elsewhere.

        Raises:
            MissingModelError: a model was already removed from the cache.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {f"{sha}.tflite" for sha in sha256s}
        for old in folder.glob("*.tflite"):
            if old.name not in wanted:
                old.unlink(missing_ok=True)
        for sha in sha256s:
            target = folder / f"{sha}.tflite"
            if target.exists():
                continue
            source = self.path(MODELS, sha, ".tflite")
            try:
                os.link(source, target)
            except FileNotFoundError:
                raise MissingModelError(f"the model file {sha[:12]} was removed before it could be kept; "
                                        "run the comparison again") from None
            except OSError:  # another filesystem, or links not allowed
                shutil.copyfile(source, target)
        return KeptModels(folder)

    def get_json(self, kind: str, key: str) -> Any | None:
        """The stored JSON value, or None (also for a corrupt entry)."""
        data = self.get_bytes(kind, key, ".json")
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None

    def put_json(self, kind: str, key: str, value: Any) -> Path | None:
        """Stores a JSON value; on a full disk it is not stored (None): the caller computed it and goes on.

        A JSON entry only saves work the next time (a result, a description, which model a
        build made), so a full disk costs that saving, not the request.
        """
        try:
            return self.put_bytes(kind, key, json.dumps(value, sort_keys=True).encode(), ".json")
        except CacheFullError:
            return None
