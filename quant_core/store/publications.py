"""Published comparisons: a database of records and a content-addressed folder of blobs beside it.

A publication is a finished comparison (the CompareResult as JSON) with named blobs
(thumbnails, and the .tflite files or the source model when the owner chose to include
them). Records live in SQLite by default (a file in the store's folder; nothing to
install) or in PostgreSQL when a database URL is given, so that several app servers share
them. The schema is created and upgraded by Alembic (quant_core/store/migrations).

Safety, by construction:
- ids carry 128 random bits (`secrets`), never derived from content another user could know;
  the delete token is another 128 random bits, stored only as its sha256;
- every write is one transaction under a store-wide writer lock (a PostgreSQL advisory lock;
  SQLite's BEGIN IMMEDIATE), so a delete never removes a blob file that a concurrent publish
  is about to reference; reads never wait for it on PostgreSQL;
- a publish writes its missing blob files (atomically: temp file, then rename) and then the
  record and its references; a crash before the commit leaves no record, at most blob files
  no row names, which `collect_garbage` removes when a store opens (a crash means a restart);
- deleting removes the record and, in the same transaction, the blobs no other record uses;
- expired records read as missing and are purged by the next publish or clean-up.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from quant_core.config import Config, config
from quant_core.errors import InputError
from quant_core.results.compare_result import CompareResult

DEFAULT_RETENTION = timedelta(days=Config.publish_days)
DEFAULT_MAX_BYTES = int(Config.publish_max_mb * 2**20)
_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")  # token_urlsafe(16): 128 bits in 22 characters
_NAME = re.compile(r"^[a-z]+(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)+$")  # "thumbs/00001.png", "models/<sha256>.tflite"

metadata = sa.MetaData()
publications = sa.Table(
    "publications", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("delete_hash", sa.String(64)),  # sha256 of the delete token (published kind only)
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("image_count", sa.Integer, nullable=False),
    sa.Column("result_json", sa.Text, nullable=False),
    sa.Column("total_bytes", sa.BigInteger, nullable=False),
)
blobs = sa.Table(
    "blobs", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
)
publication_blobs = sa.Table(
    "publication_blobs", metadata,
    sa.Column("publication_id", sa.String(32), sa.ForeignKey("publications.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("name", sa.String(512), primary_key=True),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("blobs.sha256"), nullable=False, index=True),
)


class Kind(enum.StrEnum):
    """Why a comparison is stored."""

    PUBLISHED = "published"  # shared with a link; the owner holds a delete link
    SESSION = "session"  # a browser session's current result, brought back by a reload (its id is the secret)


class NotFoundError(InputError):
    """No such publication: never published, deleted or expired (the message does not say which)."""


class StoreFullError(InputError):
    """Publishing would take the store over its size cap."""


@dataclass(frozen=True)
class Receipt:
    """What the owner gets back from `publish`: the id for the link and the private delete token."""

    id: str
    delete_token: str | None
    expires_at: datetime


@dataclass(frozen=True)
class Publication:
    """A stored comparison as a reader sees it."""

    id: str
    kind: Kind
    created_at: datetime
    expires_at: datetime
    model_name: str
    image_count: int
    result: CompareResult
    files: tuple[str, ...]  # blob names: thumbnail_name(k), model_name(sha256), "source/model.<ext>"

    @property
    def summary(self) -> str:
        """What it is, in one line: 'published on 2026-11-30, model X, 22 images'."""
        verb = "published" if self.kind is Kind.PUBLISHED else "saved"
        return (f"{verb} on {self.created_at:%Y-%m-%d %H:%M} UTC, model {self.model_name}, "
                f"{self.image_count} images")


def anonymised(result: CompareResult) -> CompareResult:
    """The result with image file names replaced by image_001.<ext>... (labels stay: they are what is compared).

    Thumbnails are named by image position (`thumbnail_name`), so they need no renaming;
    skipped files are listed without their names.
    """
    images = tuple(replace(image, file=f"image_{k + 1:03d}{Path(image.file).suffix.lower()}")
                   for k, image in enumerate(result.images))
    renamed = {old.file: new.file for old, new in zip(result.images, images)}
    skipped = tuple(replace(s, name=f"skipped_{k + 1:03d}") for k, s in enumerate(result.skipped))
    variants = tuple(replace(v, calibration_images=tuple(  # a recipe's calibration images are named too
        replace(c, name=renamed.get(c.name, f"calibration_{k + 1:03d}")) for k, c in enumerate(v.calibration_images)))
        for v in result.variants)
    return replace(result, images=images, skipped=skipped, variants=variants)


def thumbnail_name(position: int) -> str:
    """The blob name of the thumbnail of `result.images[position]`."""
    return f"thumbs/{position:05d}.png"


def model_name(sha256: str) -> str:
    """The blob name of a variant's .tflite (by its content key, as results name their models)."""
    return f"models/{sha256}.tflite"


class PublishedModels:
    """A publication's .tflite files as a ModelStore: what `CompareResult.variant_files` reads models from."""

    def __init__(self, store: PublicationStore, publication_id: str) -> None:
        self._store, self._id = store, publication_id

    def model_bytes(self, sha256: str) -> bytes:
        """The variant's model, when the owner published it.

        Raises:
            NotFoundError: the models were not published.
        """
        return self._store.blob(self._id, model_name(sha256))


class PublicationStore:
    """Publications in a database (SQLite in `folder` unless `url` is given) with blobs in `folder/blobs`.

    Args:
        folder: where blobs (and the default SQLite file) live; created if needed.
        url: a SQLAlchemy database URL; None means `sqlite:///<folder>/publications.sqlite`.
        retention: how long a publication lives.
        max_bytes: cap on the total size of records and blobs.
    """

    def __init__(self, folder: Path, *, url: str | None = None, retention: timedelta = DEFAULT_RETENTION,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = Path(folder)
        self.blob_dir = self.folder / "blobs"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.url = url or f"sqlite:///{self.folder / 'publications.sqlite'}"
        self.retention = retention
        self.max_bytes = max_bytes
        self.engine = _engine(self.url)
        from quant_core.store.migrations import upgrade  # pylint: disable=import-outside-toplevel

        upgrade(self.engine)
        self.collect_garbage()  # what a publish that crashed before its commit left behind

    @classmethod
    def from_env(cls, default_folder: Path) -> PublicationStore:
        """The store configured by QW_STORE_DIR (else `default_folder`), QW_DATABASE_URL, QW_PUBLISH_DAYS and
        QW_PUBLISH_MAX_MB (quant_core.config)."""
        settings = config()
        return cls(settings.store_dir or default_folder, url=settings.database_url,
                   retention=timedelta(days=settings.publish_days), max_bytes=int(settings.publish_max_mb * 2**20))

    # --- writing --------------------------------------------------------------------------------------------------

    def publish(self, result: CompareResult, files: Mapping[str, bytes], *, kind: Kind = Kind.PUBLISHED,
                anonymise: bool = False, now: datetime | None = None) -> Receipt:
        """Stores a comparison with its named blobs; returns its id (and, when published, the delete token).

        Raises:
            StoreFullError: the store would exceed its cap (nothing is written).
            InputError: a blob name that is not a plain relative path.
        """
        if anonymise:
            result = anonymised(result)
        for name in files:
            if not _NAME.match(name) or ".." in name.split("/"):
                raise InputError(f"expected a plain relative blob name, got {name!r}")
        now = now or datetime.now(UTC)
        self.purge_expired(now=now)
        record = json.dumps(result.to_dict(), separators=(",", ":"))
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        new_id, token = secrets.token_urlsafe(16), secrets.token_urlsafe(16) if kind is Kind.PUBLISHED else None
        expires = now + self.retention
        with self.engine.begin() as conn:
            _lock_for_writing(conn)
            stored = {row.sha256 for row in conn.execute(sa.select(blobs.c.sha256).where(
                blobs.c.sha256.in_(set(digests.values()))))}
            added = {sha: len(files[name]) for name, sha in digests.items() if sha not in stored}
            used = self._usage(conn)
            wanted = len(record) + sum(added.values())
            if used + wanted > self.max_bytes:
                raise StoreFullError(
                    f"the publication store is full: {used / 2**20:.0f} MB used of {self.max_bytes / 2**20:.0f} MB "
                    f"and this needs {wanted / 2**20:.1f} MB; publish without the model files, delete older "
                    f"publications, or raise QW_PUBLISH_MAX_MB")
            if added:  # checked under the writer lock: no other writer adds them meanwhile
                conn.execute(blobs.insert(), [{"sha256": sha, "size": size} for sha, size in added.items()])
            for name, sha in digests.items():  # files are written under the rows' locks (see the module doc)
                self._write_blob(sha, files[name])
            conn.execute(publications.insert().values(
                id=new_id, kind=kind.value, delete_hash=_hash(token) if token else None, created_at=now,
                expires_at=expires, model_name=result.model.name, image_count=len(result.images),
                result_json=record, total_bytes=len(record)))
            if digests:
                conn.execute(publication_blobs.insert(), [{"publication_id": new_id, "name": name, "sha256": sha}
                                                          for name, sha in digests.items()])
        return Receipt(id=new_id, delete_token=token, expires_at=expires)

    def delete(self, publication_id: str, token: str | None = None, *, kind: Kind = Kind.PUBLISHED) -> None:
        """Deletes a publication and the blobs no other one uses.

        A published comparison needs its delete token; a session's record is deleted by
        its id alone (the id is the session's secret).

        Raises:
            NotFoundError: no such record, or the token does not match (the message is the same).
        """
        with self.engine.begin() as conn:
            _lock_for_writing(conn)
            row = conn.execute(sa.select(publications.c.kind, publications.c.delete_hash).where(
                publications.c.id == publication_id)).first() if _ID.match(publication_id or "") else None
            allowed = row is not None and row.kind == kind.value and (
                kind is Kind.SESSION or (token is not None and row.delete_hash is not None
                                         and hmac.compare_digest(row.delete_hash, _hash(token))))
            if not allowed:
                raise NotFoundError("no such publication, or this delete link does not match it")
            conn.execute(publication_blobs.delete().where(publication_blobs.c.publication_id == publication_id))
            conn.execute(publications.delete().where(publications.c.id == publication_id))
            self._drop_unused_blobs(conn)

    def purge_expired(self, *, now: datetime | None = None) -> int:
        """Deletes expired records and their unused blobs; returns how many records went."""
        now = now or datetime.now(UTC)
        with self.engine.begin() as conn:
            expired = [r.id for r in conn.execute(sa.select(publications.c.id).where(
                publications.c.expires_at <= now))]
            if not expired:
                return 0
            _lock_for_writing(conn)
            conn.execute(publication_blobs.delete().where(publication_blobs.c.publication_id.in_(expired)))
            conn.execute(publications.delete().where(publications.c.id.in_(expired)))
            self._drop_unused_blobs(conn)
        return len(expired)

    def collect_garbage(self) -> int:
        """Removes blob files that no row names (left by a publish that crashed before its commit)."""
        with self.engine.begin() as conn:
            _lock_for_writing(conn)
            known = {r.sha256 for r in conn.execute(sa.select(blobs.c.sha256))}
            removed = 0
            for path in self.blob_dir.glob("*/*"):
                if path.name not in known and not path.name.startswith("."):
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    # --- reading --------------------------------------------------------------------------------------------------

    def open(self, publication_id: str, *, kind: Kind = Kind.PUBLISHED, now: datetime | None = None) -> Publication:
        """A stored comparison, read-only.

        Raises:
            NotFoundError: never stored, deleted, expired, or of the other kind.
        """
        now = now or datetime.now(UTC)
        if not _ID.match(publication_id or ""):
            raise NotFoundError("no such publication: it was deleted, has expired, or the link is incomplete")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(publications).where(publications.c.id == publication_id)).first()
            names = [r.name for r in conn.execute(sa.select(publication_blobs.c.name).where(
                publication_blobs.c.publication_id == publication_id).order_by(publication_blobs.c.name))]
        if row is None or row.kind != kind.value or _aware(row.expires_at) <= now:
            raise NotFoundError("no such publication: it was deleted, has expired, or the link is incomplete")
        return Publication(id=row.id, kind=Kind(row.kind), created_at=_aware(row.created_at),
                           expires_at=_aware(row.expires_at), model_name=row.model_name,
                           image_count=row.image_count, result=CompareResult.from_dict(json.loads(row.result_json)),
                           files=tuple(names))

    def blob(self, publication_id: str, name: str) -> bytes:
        """One named blob of a publication, checked against its content key.

        Raises:
            NotFoundError: the publication has no such blob.
        """
        with self.engine.connect() as conn:
            sha = conn.execute(sa.select(publication_blobs.c.sha256).where(
                publication_blobs.c.publication_id == publication_id, publication_blobs.c.name == name)).scalar()
        if sha is None:
            raise NotFoundError(f"this publication has no file {name!r}")
        data = self._blob_path(sha).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise NotFoundError(f"the stored file {name!r} is damaged")
        return data

    def usage(self) -> int:
        """Bytes held: every record's JSON and every blob."""
        with self.engine.connect() as conn:
            return self._usage(conn)

    # --- internals ------------------------------------------------------------------------------------------------

    @staticmethod
    def _usage(conn: sa.Connection) -> int:
        records = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(publications.c.total_bytes), 0))).scalar()
        stored = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(blobs.c.size), 0))).scalar()
        return int(records or 0) + int(stored or 0)

    def _blob_path(self, sha: str) -> Path:
        return self.blob_dir / sha[:2] / sha

    def _write_blob(self, sha: str, data: bytes) -> None:
        """Writes a blob file unless it is there (atomically: a temp file renamed into place)."""
        path = self._blob_path(sha)
        if path.is_file() and path.stat().st_size == len(data):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _drop_unused_blobs(self, conn: sa.Connection) -> None:
        """In the caller's transaction: deletes blob rows no reference names, then their files."""
        unused = [r.sha256 for r in conn.execute(sa.select(blobs.c.sha256).where(
            ~sa.exists().where(publication_blobs.c.sha256 == blobs.c.sha256)))]
        if unused:
            conn.execute(blobs.delete().where(blobs.c.sha256.in_(unused)))
            for sha in unused:
                self._blob_path(sha).unlink(missing_ok=True)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes for timezone-aware columns: they were stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _engine(url: str) -> sa.Engine:
    """An engine; SQLite gets a busy timeout, foreign keys and WAL, and transactions that lock at BEGIN."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's BEGIN below, not the driver's implicit one
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # writers queue here instead of failing at their first write

    return engine


def _lock_for_writing(conn: sa.Connection) -> None:
    """Serializes writers on PostgreSQL (SQLite's BEGIN IMMEDIATE already does): blobs are shared between records."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7120523)"))

