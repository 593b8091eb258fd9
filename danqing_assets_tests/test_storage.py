"""The object store against a local folder and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import os
import threading
import time
import traceback
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from danqing_assets.resources.storage import (
    InvalidKey,
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    StorageAuthError,
    StorageError,
    StorageResource,
    StorageUnavailable,
    get_json,
    join_key,
    put_json,
    read_parquet,
    safe_key_segment,
    validate_key,
    validate_prefix,
    write_parquet,
)
from danqing_assets.resources.storage_s3 import S3ObjectStore, is_transient
from danqing_assets.settings import Settings
from danqing_assets_tests.s3_server import S3Server


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    return request.getfixturevalue(f"{request.param}_store")


def test_bytes_round_trip(store: ObjectStore) -> None:
    blob = bytes(range(256)) * 100
    store.put_bytes("a/blob.bin", blob)
    store.put_bytes("empty", b"")
    assert store.get_bytes("a/blob.bin") == blob
    assert store.get_bytes("empty") == b""
    assert store.exists("a/blob.bin") and not store.exists("a/nope") and not store.exists("a")


def test_file_and_stream_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(12 * 1024 * 1024 + 7))  # > 5 MiB: multipart on S3
    store.put_file("files/big.bin", src)
    dst = tmp_path / "out" / "big.bin"
    store.download_file("files/big.bin", dst)
    assert dst.read_bytes() == src.read_bytes()
    with store.open_read("files/big.bin") as f:
        chunks = list(iter(lambda: f.read(1_000_003), b""))
    assert b"".join(chunks) == src.read_bytes() and len(chunks) == 13
    assert not [p for p in dst.parent.iterdir() if p.name != "big.bin"]  # no temp left


def test_uri_and_local_path(store: ObjectStore) -> None:
    store.put_bytes("u/x.txt", b"x")
    if isinstance(store, LocalObjectStore):
        assert store.uri("u/x.txt") == (store.root / "u" / "x.txt").as_uri()
        assert store.local_path("u/x.txt").read_bytes() == b"x"
        with pytest.raises(ObjectNotFound):
            store.local_path("u/missing")
    else:
        assert store.uri("u/x.txt") == f"s3://{store.bucket}/u/x.txt"
        assert store.local_path("u/x.txt") is None


def test_list_order_and_prefix_semantics(store: ObjectStore) -> None:
    keys = ["b/2", "b/10", "a/x-y", "a/x/z", "a/xy", "a/中文/页.json", "c", "ab/1"]
    for k in keys:
        store.put_bytes(k, k.encode())
    assert store.list() == store.list("") == sorted(keys)
    assert store.list("a/") == ["a/x-y", "a/x/z", "a/xy", "a/中文/页.json"]
    assert store.list("a") == ["a/x-y", "a/x/z", "a/xy", "a/中文/页.json", "ab/1"]  # string prefix
    assert store.list("a/x") == ["a/x-y", "a/x/z", "a/xy"]
    assert store.list("a/x/") == ["a/x/z"]
    assert store.list("a/中") == ["a/中文/页.json"]
    assert store.list("nothing/") == [] and store.list("zz") == []


def test_delete_and_delete_prefix(store: ObjectStore) -> None:
    for k in ["run/1/a", "run/1/b/c", "run/10/a", "run/2/a", "keep"]:
        store.put_bytes(k, b".")
    store.delete("keep")
    store.delete("keep")  # idempotent, like S3
    assert not store.exists("keep")
    assert store.delete_prefix("run/1/") == 2
    assert store.list() == ["run/10/a", "run/2/a"]
    assert store.delete_prefix("run/") == 2 and store.list() == []
    assert store.delete_prefix("run/") == 0
    if isinstance(store, LocalObjectStore):
        assert list(store.root.iterdir()) == []  # empty folders pruned


def test_missing_objects_raise_object_not_found(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("d/present", b"1")
    for call in (
        lambda: store.get_bytes("d/missing"),
        lambda: store.open_read("d/missing"),
        lambda: store.download_file("d/missing", tmp_path / "x"),
        lambda: store.get_bytes("d"),  # a "folder" is no object
    ):
        with pytest.raises(ObjectNotFound) as info:
            call()
        assert isinstance(info.value, KeyError) and str(info.value).startswith("object not found: ")
    assert not (tmp_path / "x").exists()


def test_overwrite_replaces(store: ObjectStore) -> None:
    store.put_bytes("o/k", b"long old content " * 100)
    store.put_bytes("o/k", b"new")
    assert store.get_bytes("o/k") == b"new"
    with store.writer("o/k") as f:
        f.write(b"newer")
    assert store.get_bytes("o/k") == b"newer" and store.list("o/") == ["o/k"]


def _disk_files(store: ObjectStore) -> list[str]:
    assert isinstance(store, LocalObjectStore)
    return sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file())


def test_writer_is_atomic(store: ObjectStore) -> None:
    with store.writer("w/new") as f:
        f.write(b"part one ")
        assert not store.exists("w/new") and store.list("w/") == []  # invisible until exit
        f.write(b"part two")
    assert store.get_bytes("w/new") == b"part one part two"

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with store.writer("w/failed") as f:
            f.write(b"x" * 100_000)
            raise Boom
    store.put_bytes("w/old", b"old")
    with pytest.raises(Boom):
        with store.writer("w/old") as f:
            f.write(b"half")
            raise Boom
    assert not store.exists("w/failed") and store.get_bytes("w/old") == b"old"
    assert store.list() == ["w/new", "w/old"]
    if isinstance(store, LocalObjectStore):
        assert _disk_files(store) == ["w/new", "w/old"]  # no temp files left behind


def test_readers_never_see_partial_objects(store: ObjectStore) -> None:
    a, b = b"A" * 3_000_000, b"B" * 2_000_000
    store.put_bytes("c/k", a)
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            data = store.get_bytes("c/k")
            seen.add(data[:1] + str(len(data)).encode())
            assert data in (a, b)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(8):
            store.put_bytes("c/k", b if i % 2 == 0 else a)
    finally:
        stop.set()
        reader.join()
    assert seen <= {b"A3000000", b"B2000000"}


def test_parquet_and_json_helpers(store: ObjectStore) -> None:
    df = pl.DataFrame({"url": ["https://例子.cn/图.jpg", "http://x/y.png"], "alt": ["丹青 山水画", ""], "n": [1, 2]})
    write_parquet(store, "t/images.parquet", df)
    assert read_parquet(store, "t/images.parquet").equals(df)
    assert store.get_bytes("t/images.parquet")[:4] == b"PAR1"
    obj = {"名字": "丹青", "list": [1, 2.5, None], "a": {"z": 1, "b": "é"}}
    put_json(store, "t/meta.json", obj)
    assert get_json(store, "t/meta.json") == obj
    text = store.get_bytes("t/meta.json").decode("utf-8")
    assert "丹青" in text and text.index('"a"') < text.index('"list"') < text.index('"名字"')
    assert store.list("t/") == ["t/images.parquet", "t/meta.json"]


BAD_KEYS = [
    "", "/abs", "../x", "a/../../b", "a/./b", ".", "..", "a//b", "a/", "a\\b", "a\x00b",
    "a\nb", "a\x7fb", "\ud800", "x" * 1025, "a/" + "y" * 256, "a/.b.tmp-" + "0" * 32,
]  # fmt: skip


@pytest.mark.parametrize("key", BAD_KEYS, ids=range(len(BAD_KEYS)))
def test_bad_keys_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)
    with pytest.raises(InvalidKey):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidKey):
        store.get_bytes(key)
    with pytest.raises(InvalidKey):
        store.exists(key)
    assert isinstance(InvalidKey("x"), ValueError)


@pytest.mark.parametrize("prefix", ["/", "/a", "../", "a/../", "a//", "a\\", "a\x00"])
def test_bad_prefixes_rejected(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        store.list(prefix)
    with pytest.raises(InvalidKey):
        store.delete_prefix(prefix)


def test_good_keys_accepted() -> None:
    for key in ["a", "a/b.c", ".hidden/x", "a/..b", "中文/图片.jpg", "x" * 255, "a:b@c=d"]:
        assert validate_key(key) == key
    for prefix in ["", "a", "a/", "a/b", "a/.", "中"]:
        assert validate_prefix(prefix) == prefix
    assert join_key("a/", "b", "/c") == "a/b/c"


HOSTILE = [
    "http://user:pw@host/../../etc/passwd?x=1",
    "../../..",
    "..",
    ".",
    "",
    ".hidden.tmp-" + "a" * 32,
    "/",
    "a\\b\x00c\n",
    "丹青.中国",
    "\udcff\ud800 lone surrogates",
    "%2E%2E",
    "x" * 10_000,
    "🎨" * 3000,
]


def test_safe_key_segment_makes_hostile_text_safe(store: ObjectStore) -> None:
    segs = [safe_key_segment(t) for t in HOSTILE]
    assert len(set(segs)) == len(segs)  # distinct inputs stay distinct
    for text, seg in zip(HOSTILE, segs, strict=True):
        assert validate_key(seg) == seg and "/" not in seg and len(seg) <= 128
        assert safe_key_segment(text) == seg  # deterministic
        store.put_bytes(f"hostile/{seg}", b"ok")
    assert store.list("hostile/") == sorted(f"hostile/{s}" for s in segs)
    if isinstance(store, LocalObjectStore):
        files = [p.resolve() for p in store.root.rglob("*") if p.is_file()]
        assert len(files) == len(HOSTILE) and all(p.parent == store.root / "hostile" for p in files)
    assert safe_key_segment("example.com") == "example.com"
    assert safe_key_segment(b"\xff\xfe") == "%FF%FE"
    long_a, long_b = safe_key_segment("y" * 500 + "a"), safe_key_segment("y" * 500 + "b")
    assert long_a != long_b and "~" in long_a


def test_local_store_never_escapes_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalObjectStore(tmp_path / "root")
    (store.root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidKey):
        store.put_bytes("link/x", b"x")
    with pytest.raises(InvalidKey):
        store.list("link/")
    assert list(outside.iterdir()) == []


def test_s3_wrong_credentials_refused_without_leaking_secret(s3_server: S3Server) -> None:
    wrong_secret = "WRONG-SECRET-c2f1e9a7d3"
    bad = S3ObjectStore(
        endpoint=s3_server.endpoint, bucket="creds-test", access_key=s3_server.access_key,
        secret_key=wrong_secret, region=s3_server.region,
    )  # fmt: skip
    for call in (lambda: bad.put_bytes("k", b"x"), lambda: bad.get_bytes("k"), lambda: bad.list("")):
        t0 = time.monotonic()
        with pytest.raises(StorageAuthError) as info:
            call()
        assert time.monotonic() - t0 < 5  # 4xx: not retried
        full = "".join(traceback.format_exception(info.value)) + repr(bad) + repr(info.value)
        assert "refused access" in str(info.value) and s3_server.access_key in str(info.value)
        assert wrong_secret not in full and s3_server.secret_key not in full
        assert isinstance(info.value, PermissionError)


def test_s3_retries_across_server_restart(s3_server: S3Server, s3_store: S3ObjectStore) -> None:
    s3_store.put_bytes("r/before", b"before")
    s3_server.stop()
    try:
        quick = S3ObjectStore(
            endpoint=s3_server.endpoint, bucket=s3_store.bucket, access_key=s3_server.access_key,
            secret_key=s3_server.secret_key, retry_attempts=3, retry_max_s=1.0,
        )  # fmt: skip
        with pytest.raises(StorageUnavailable, match="unavailable"):
            quick.get_bytes("r/before")
        result: dict[str, object] = {}

        def put() -> None:
            try:
                s3_store.put_bytes("r/during", b"during restart")
                result["ok"] = True
            except BaseException as e:  # noqa: BLE001
                result["error"] = e

        thread = threading.Thread(target=put)
        thread.start()
        time.sleep(1.5)
        assert thread.is_alive()  # still retrying while the server is down
    finally:
        s3_server.start()
    thread.join(60)
    assert result == {"ok": True}
    assert s3_store.get_bytes("r/during") == b"during restart"
    assert s3_store.get_bytes("r/before") == b"before"  # data persist across restarts


def test_transient_classification() -> None:
    import urllib3
    from minio.error import ServerError

    assert is_transient(ConnectionRefusedError()) and is_transient(TimeoutError())
    assert is_transient(urllib3.exceptions.ProtocolError("reset"))
    assert is_transient(ServerError("x", 503)) and not is_transient(ServerError("x", 404))
    assert not is_transient(ValueError()) and not is_transient(urllib3.exceptions.SSLError())


def test_resource_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server) -> None:
    local = StorageResource.from_settings(Settings(data_dir=tmp_path))
    assert local.store() is local.store()
    assert isinstance(local.store(), LocalObjectStore) and local.store().root == tmp_path / "store"

    monkeypatch.setenv("DANQING_S3_SECRET_KEY", s3_server.secret_key)
    settings = Settings(
        storage_kind="s3", s3_endpoint=s3_server.endpoint, s3_bucket="resource-test", s3_prefix="pre/fix",
        s3_access_key=s3_server.access_key,
    )  # fmt: skip
    res = StorageResource.from_settings(settings)
    assert s3_server.secret_key not in repr(res)

    @dg.asset
    def writes_json(storage: StorageResource) -> None:
        put_json(storage.store(), "asset/out.json", {"丹": 1})

    assert dg.materialize([writes_json], resources={"storage": res}).success
    store = res.store()
    assert (
        isinstance(store, S3ObjectStore) and store.uri("asset/out.json") == "s3://resource-test/pre/fix/asset/out.json"
    )
    assert get_json(store, "asset/out.json") == {"丹": 1} and s3_server.secret_key not in repr(store)
    with pytest.raises(ValueError, match="unknown storage kind"):
        StorageResource(kind="ftp").store()
    assert issubclass(StorageError, Exception)
