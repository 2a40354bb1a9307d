"""The publication store against SQLite and a real PostgreSQL server (started by the test on loopback)."""

from __future__ import annotations

from dataclasses import replace

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from quant_core import CompareOptions, CompareRequest, CompareResult, Mode, Recipe, run_compare
from quant_core.cache import ArtifactCache
from quant_core.store.publications import Kind, NotFoundError, PublicationStore, StoreFullError, anonymised

THUMBS = {"thumbs/a.png": b"a" * 300, "thumbs/b.png": b"b" * 300}


@pytest.fixture(scope="module")
def result(model_files, image_dir, labels_file, tmp_path_factory) -> CompareResult:
    request = CompareRequest(str(model_files["keras"]), (str(image_dir),), str(labels_file), CompareOptions(
        recipes=(Recipe(Mode.INT8),), measure_latency=False))
    return run_compare(request, cache=ArtifactCache(tmp_path_factory.mktemp("pub-cache")))


@pytest.fixture(scope="module")
def postgres_url():
    from pg_server import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request, tmp_path):
    """A factory of stores on one database (SQLite in tmp_path, or a fresh PostgreSQL database)."""
    url = None
    if request.param == "postgresql":
        import sqlalchemy as sa

        server = request.getfixturevalue("postgres_url")
        name = f"t{abs(hash(request.node.name)) % 10**9}"
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = server.rsplit("/", 1)[0] + f"/{name}"

    def make(**kwargs) -> PublicationStore:
        return PublicationStore(tmp_path / "store", url=url, **kwargs)

    return make


def blob_files(store: PublicationStore) -> set[str]:
    return {p.name for p in store.blob_dir.glob("*/*") if not p.name.startswith(".")}


def test_a_publication_reads_back_as_published(make_store, result):
    store = make_store()
    receipt = store.publish(result, THUMBS | {"models/int8.tflite": b"m" * 1000})
    pub = store.open(receipt.id)
    assert pub.result == result and pub.kind is Kind.PUBLISHED
    assert pub.files == ("models/int8.tflite", "thumbs/a.png", "thumbs/b.png")
    assert store.blob(receipt.id, "thumbs/b.png") == THUMBS["thumbs/b.png"]
    assert pub.summary.startswith("published on ") and f"model tiny, {len(result.images)} images" in pub.summary
    assert pub.expires_at - pub.created_at == timedelta(days=30)


def test_ids_are_random_not_derived_from_content(make_store, result):
    store = make_store()
    receipts = [store.publish(result, THUMBS) for _ in range(20)]
    ids = {r.id for r in receipts} | {r.delete_token for r in receipts}
    assert len(ids) == 40  # the same content twice gets two ids, and no token repeats an id
    assert all(len(i) == 22 and i.replace("-", "").replace("_", "").isalnum() for i in ids)  # 128 bits each
    assert len(blob_files(store)) == 2  # the blobs themselves are stored once


def test_delete_needs_its_own_token_and_keeps_shared_blobs(make_store, result):
    store = make_store()
    first = store.publish(result, THUMBS)
    second = store.publish(result, {"thumbs/a.png": THUMBS["thumbs/a.png"], "thumbs/c.png": b"c" * 10})
    for token in (None, "", second.delete_token, first.delete_token[:-1] + "x"):
        with pytest.raises(NotFoundError):
            store.delete(first.id, token)
    with pytest.raises(NotFoundError):
        store.delete(first.id, first.delete_token, kind=Kind.SESSION)  # a publication is not a session
    store.delete(first.id, first.delete_token)
    with pytest.raises(NotFoundError):
        store.open(first.id)
    with pytest.raises(NotFoundError):
        store.delete(first.id, first.delete_token)  # twice: gone
    assert store.blob(second.id, "thumbs/a.png") == THUMBS["thumbs/a.png"]  # shared: kept
    assert len(blob_files(store)) == 2  # b.png went with the only record that used it
    store.delete(second.id, second.delete_token)
    assert blob_files(store) == set() and store.usage() == 0


def test_expired_publications_read_as_missing_and_are_purged(make_store, result):
    store = make_store(retention=timedelta(days=1))
    old = store.publish(result, THUMBS, now=datetime.now(UTC) - timedelta(days=2))
    fresh = store.publish(result, {"thumbs/z.png": b"z"})  # its publish purged the old one
    with pytest.raises(NotFoundError):
        store.open(old.id)
    assert store.open(fresh.id).files == ("thumbs/z.png",)
    assert len(blob_files(store)) == 1
    later = datetime.now(UTC) + timedelta(days=2)
    with pytest.raises(NotFoundError):
        store.open(fresh.id, now=later)
    assert store.purge_expired(now=later) == 1 and store.usage() == 0


def test_the_cap_refuses_with_a_clear_message_and_writes_nothing(make_store, result):
    store = make_store(max_bytes=2 * 2**20)
    store.publish(result, THUMBS)
    before, files = store.usage(), blob_files(store)
    with pytest.raises(StoreFullError, match=r"publication store is full: 0 MB used of 2 MB .* QW_PUBLISH_MAX_MB"):
        store.publish(result, {"models/big.tflite": b"x" * (3 * 2**20)})
    assert store.usage() == before and blob_files(store) == files


def test_a_crash_mid_publish_leaves_no_record_and_its_files_are_collected(make_store, result, monkeypatch):
    from quant_core.store import publications

    store = make_store()
    kept = store.publish(result, THUMBS)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-publish")

    monkeypatch.setattr(publications.publications, "insert", crash)
    with pytest.raises(KeyboardInterrupt):
        store.publish(result, {"thumbs/orphan.png": b"o" * 50})
    monkeypatch.undo()
    assert len(blob_files(store)) == 3  # the orphan file was written before the crash...
    restarted = make_store()  # ...and no row names it: the store removes it when it opens again
    assert len(blob_files(restarted)) == 2 and restarted.open(kept.id).files == ("thumbs/a.png", "thumbs/b.png")
    assert restarted.collect_garbage() == 0


def test_the_store_survives_a_restart(make_store, result):
    receipt = make_store().publish(result, THUMBS)
    again = make_store()  # a new process: the schema is already there, the records too
    assert again.open(receipt.id).result == result
    from quant_core.store.migrations import current

    assert current(again.engine) == "0001"


def test_concurrent_publishes_reads_and_deletes_stay_consistent(make_store, result):
    store = make_store()
    shared = {"thumbs/shared.png": b"s" * 100}
    errors: list[BaseException] = []
    kept: list[str] = []

    def worker(k: int) -> None:
        try:
            for n in range(6):
                receipt = store.publish(result, shared | {f"thumbs/{k}-{n}.png": bytes([k, n]) * 20})
                assert store.open(receipt.id).files[0].startswith("thumbs/")
                if n % 2:
                    store.delete(receipt.id, receipt.delete_token)
                else:
                    kept.append(receipt.id)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(kept) == 12
    for pub_id in kept:  # every surviving publication reads whole: its own blob and the shared one
        assert store.blob(pub_id, "thumbs/shared.png") == shared["thumbs/shared.png"]
    assert len(blob_files(store)) == 12 + 1


def test_sessions_and_publications_do_not_open_as_each_other(make_store, result):
    store = make_store()
    session = store.publish(result, THUMBS, kind=Kind.SESSION)
    assert session.delete_token is None
    assert store.open(session.id, kind=Kind.SESSION).kind is Kind.SESSION
    with pytest.raises(NotFoundError):
        store.open(session.id)  # a session's private id is no share link
    store.delete(session.id, kind=Kind.SESSION)
    with pytest.raises(NotFoundError):
        store.open(session.id, kind=Kind.SESSION)


@pytest.mark.parametrize("bad", ["", "../../etc/passwd", "x" * 22 + "'--", "A" * 21, None])
def test_malformed_ids_are_not_found(tmp_path, bad):
    store = PublicationStore(tmp_path)
    with pytest.raises(NotFoundError):
        store.open(bad)
    with pytest.raises(NotFoundError):
        store.delete(bad, "token")


@pytest.mark.parametrize("name", ["../x.png", "/etc/passwd", "thumbs/../../x", "a\\b", "thumbs/.hidden", "x"])
def test_blob_names_must_be_plain_relative_paths(tmp_path, result, name):
    with pytest.raises(Exception, match="plain relative blob name"):
        PublicationStore(tmp_path).publish(result, {name: b"x"})


def test_anonymised_results_hide_file_names_but_keep_labels(make_store, result):
    store = make_store()
    hidden = store.open(store.publish(result, THUMBS, anonymise=True).id).result
    assert [i.file for i in hidden.images] == [f"image_{k:03d}.png" for k in range(1, len(result.images) + 1)]
    assert [i.label for i in hidden.images] == [i.label for i in result.images]
    assert anonymised(result) == hidden
    assert [replace(v, calibration_images=()) for v in hidden.variants] == \
        [replace(v, calibration_images=()) for v in result.variants]
    calibrated = next(v for v in hidden.variants if v.calibration_images)  # its recipe names the images it fed
    assert {c.name for c in calibrated.calibration_images} <= {i.file for i in hidden.images}
    dumped = json.dumps(hidden.to_dict())
    assert not any(image.file in dumped for image in result.images)
