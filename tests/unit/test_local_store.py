"""``LocalStore``: a folder as an object store, safe against hostile keys."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from labelkit.errors import ObjectNotFound, StorageError
from labelkit.storage import ObjectStore
from labelkit.storage.local import LocalStore, check_key
from tests.integration.store_listing_contract import check_listing_contract

HOSTILE_KEYS = [
    "",
    "../x",
    "/etc/passwd",
    "a/../../b",
    "a/..",
    "..",
    "./a",
    "a/./b",
    "a\\b",
    "..\\..\\x",
    "a\x00b",
    "a//b",
    "a/",
    "/",
    "a\nb",
]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "images")


def test_satisfies_the_protocol(store: LocalStore) -> None:
    assert isinstance(store, ObjectStore)
    assert store.bucket is None


def test_round_trip_with_nested_keys(store: LocalStore, tmp_path: Path) -> None:
    # GIVEN a key in folders that do not exist yet
    key = "users/u1/ab12 cd+é.jpg"
    # WHEN bytes are put and read back
    store.put(key, b"\xff\xd8data", content_type="image/jpeg")
    # THEN they round-trip, and live at the expected path
    assert store.get(key) == b"\xff\xd8data"
    assert store.exists(key)
    assert (tmp_path / "images" / "users" / "u1" / "ab12 cd+é.jpg").read_bytes() == b"\xff\xd8data"
    # AND overwriting replaces the content
    store.put(key, b"new", content_type="image/jpeg")
    assert store.get(key) == b"new"


def test_keys_are_identity_mapped(store: LocalStore) -> None:
    assert store.full_key("users/u/x.png") == "users/u/x.png"
    assert store.relative_key("users/u/x.png") == "users/u/x.png"


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_are_rejected_everywhere(store: LocalStore, key: str) -> None:
    with pytest.raises(StorageError):
        store.put(key, b"x", content_type="image/png")
    with pytest.raises(StorageError):
        store.get(key)
    with pytest.raises(StorageError):
        store.exists(key)
    with pytest.raises(StorageError):
        store.delete(key)
    with pytest.raises(StorageError):
        store.full_key(key)
    with pytest.raises(StorageError):
        check_key(key)


def test_hostile_keys_are_not_object_not_found(store: LocalStore) -> None:
    # A refused key is a StorageError but not ObjectNotFound (callers must not treat it as "gone").
    with pytest.raises(StorageError) as info:
        store.get("../x")
    assert not isinstance(info.value, ObjectNotFound)


def test_symlink_escape_is_rejected(store: LocalStore, tmp_path: Path) -> None:
    # GIVEN a symlink inside the store that points outside it
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    store.root.mkdir(parents=True)
    (store.root / "link").symlink_to(outside, target_is_directory=True)
    (store.root / "filelink").symlink_to(outside / "secret.txt")
    # WHEN keys go through it THEN they are refused, and nothing outside changes
    with pytest.raises(StorageError):
        store.get("link/secret.txt")
    with pytest.raises(StorageError):
        store.get("filelink")
    with pytest.raises(StorageError):
        store.put("link/new.txt", b"x", content_type="text/plain")
    with pytest.raises(StorageError):
        store.delete("link/secret.txt")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_symlink_inside_the_store_is_allowed(store: LocalStore) -> None:
    store.put("real/a.bin", b"a", content_type="application/octet-stream")
    (store.root / "alias").symlink_to(store.root / "real", target_is_directory=True)
    assert store.get("alias/a.bin") == b"a"


def test_missing_key_is_object_not_found(store: LocalStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.get("users/nobody/none.jpg")
    assert not store.exists("users/nobody/none.jpg")
    # A folder is not an object, and neither is a path through a file.
    store.put("users/u/a.jpg", b"a", content_type="image/jpeg")
    with pytest.raises(ObjectNotFound):
        store.get("users/u")
    with pytest.raises(ObjectNotFound):
        store.get("users/u/a.jpg/b")
    assert not store.exists("users/u")


def test_delete(store: LocalStore) -> None:
    store.put("a/b.jpg", b"x", content_type="image/jpeg")
    store.delete("a/b.jpg")
    assert not store.exists("a/b.jpg")
    store.delete("a/b.jpg")  # deleting a missing key is fine
    store.delete("never/was.jpg")


def test_write_is_atomic_and_leaves_no_temporary_files(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an existing object
    store.put("k/obj.bin", b"old", content_type="application/octet-stream")

    # WHEN a write fails before the final rename
    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(StorageError):
        store.put("k/obj.bin", b"new", content_type="application/octet-stream")
    monkeypatch.undo()
    # THEN the old content is intact and the temporary file is gone
    assert store.get("k/obj.bin") == b"old"
    assert [p.name for p in (store.root / "k").iterdir()] == ["obj.bin"]


def test_readers_never_see_partial_writes(store: LocalStore) -> None:
    # GIVEN one writer replacing a large object over and over
    big_a, big_b = b"a" * 2_000_000, b"b" * 2_000_000
    store.put("big.bin", big_a, content_type="application/octet-stream")
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            store.put("big.bin", big_b, content_type="application/octet-stream")
            store.put("big.bin", big_a, content_type="application/octet-stream")

    t = threading.Thread(target=writer)
    t.start()
    try:
        # WHEN a reader reads meanwhile THEN every read is one whole version
        for _ in range(50):
            assert store.get("big.bin") in (big_a, big_b)
    finally:
        stop.set()
        t.join()


def test_written_files_are_readable(store: LocalStore) -> None:
    store.put("p.bin", b"x", content_type="application/octet-stream")
    assert (store.root / "p.bin").stat().st_mode & 0o777 == 0o644


def test_root_may_be_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = LocalStore("data/images")
    store.put("x.bin", b"1", content_type="application/octet-stream")
    assert (tmp_path / "data" / "images" / "x.bin").read_bytes() == b"1"
    assert store.root.is_absolute()


# --------------------------------------------------------------------------- listing a folder


def test_listing_a_folder_follows_the_contract(store: LocalStore) -> None:
    check_listing_contract(store)


def test_listing_skips_temporary_files_and_links_and_an_absent_root(
    store: LocalStore, tmp_path: Path
) -> None:
    # GIVEN an absent root THEN nothing is listed
    assert store.list_objects("") == [] and store.list_objects("thumbs/") == []
    # GIVEN a thumbnail, a write in progress beside it, and links to a file and a folder
    store.put("thumbs/a.jpg", b"x", content_type="image/jpeg")
    folder = store.root / "thumbs"
    (folder / ".tmp-123.part").write_bytes(b"half")
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "secret.jpg").write_bytes(b"s")
    os.symlink(outside / "deep" / "secret.jpg", folder / "link.jpg")
    os.symlink(outside / "deep", folder / "linked")
    # WHEN the folder is listed THEN only the stored object is, never what a link points at
    assert [o.key for o in store.list_objects("thumbs/")] == ["thumbs/a.jpg"]
    # AND a folder that is a file is listed as empty
    store.put("plain", b"x", content_type="text/plain")
    assert store.list_objects("plain/") == []
    # AND a limit below one lists nothing
    assert store.list_objects("thumbs/", limit=0) == []
