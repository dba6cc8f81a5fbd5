"""How every ``ObjectStore`` lists a folder of keys (shared by the ``LocalStore`` and the
``S3Store`` tests): in key order, page by page after a key, refusing what is not a folder."""

from __future__ import annotations

import time

import pytest

from labelkit.errors import StorageError
from labelkit.storage import ObjectStore

# Keys whose order differs from a naive folder-by-folder walk: '-' and '.' sort before '/'.
KEYS = [
    "thumbs/ab.jpg",
    "thumbs/a/x.jpg",
    "thumbs/a.jpg",
    "thumbs/a-b.jpg",
    "thumbs/users/u1/p 1+é.jpg",
    "users/u1/photo.jpg",  # another folder
    "thumbsx/not-in-it.jpg",  # a name that only starts like the folder
]
IN_THUMBS = ["thumbs/a-b.jpg", "thumbs/a.jpg", "thumbs/a/x.jpg", "thumbs/ab.jpg", "thumbs/users/u1/p 1+é.jpg"]


def check_listing_contract(store: ObjectStore) -> None:
    # GIVEN objects in and around the folder thumbs/
    before = time.time()
    for key in KEYS:
        store.put(key, b"\xff\xd8x", content_type="image/jpeg")
    # WHEN the folder is listed THEN exactly its objects come back, in key order (S3's order)
    listed = store.list_objects("thumbs/")
    assert [o.key for o in listed] == IN_THUMBS == sorted(IN_THUMBS)
    # AND each says when it was written (the store's clock: this machine's here)
    assert all(before - 60 <= o.modified <= time.time() + 60 for o in listed), listed
    # WHEN it is listed two at a time, each page after the last key of the one before
    pages: list[list[str]] = []
    after = ""
    while True:
        page = [o.key for o in store.list_objects("thumbs/", after=after, limit=2)]
        pages.append(page)
        if len(page) < 2:
            break
        after = page[-1]
    # THEN the pages are the listing cut in twos, the last one short
    assert pages == [IN_THUMBS[0:2], IN_THUMBS[2:4], IN_THUMBS[4:]]
    # AND "after" a key inside a subfolder, or one that is not stored, goes on from there
    assert [o.key for o in store.list_objects("thumbs/", after="thumbs/a/x.jpg")] == IN_THUMBS[3:]
    assert [o.key for o in store.list_objects("thumbs/", after="thumbs/a/")] == IN_THUMBS[2:]
    assert [o.key for o in store.list_objects("thumbs/", after="thumbs/zzz")] == []
    # AND the whole store is the empty prefix; a folder with nothing in it lists nothing
    assert [o.key for o in store.list_objects("")] == sorted(KEYS)
    assert store.list_objects("nothing/") == []
    # AND a prefix that is not a safe folder is refused, as a hostile key is
    for bad in ("thumbs", "/", "../", "thumbs//", "a/../"):
        with pytest.raises(StorageError):
            store.list_objects(bad)
