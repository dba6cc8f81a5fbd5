"""``ObjectStore.iter_chunks``: an object read in pieces, the same way from a folder and from S3
(moto), so an export bundle never holds a whole photo, let alone all of them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from labelkit.errors import ObjectNotFound, StorageError
from labelkit.storage import ObjectStore
from labelkit.storage.local import LocalStore
from labelkit.storage.s3 import S3Store
from tests.integration import aws_fixtures
from tests.integration.aws_fixtures import REGION

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

aws = aws_fixtures.aws
s3_client = aws_fixtures.s3_client

PAYLOAD = os.urandom(2_500_000)  # 2.4 pieces of 1 MiB


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.aws)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "images")
        return
    client: S3Client = request.getfixturevalue("s3_client")
    client.create_bucket(Bucket="chunks")
    yield S3Store("chunks", prefix="p", region=REGION, client=client)


def test_an_object_comes_in_pieces_that_make_it_whole(store: ObjectStore) -> None:
    # GIVEN a 2.5 MB object and an empty one
    store.put("users/u/a.jpg", PAYLOAD, content_type="image/jpeg")
    store.put("users/u/empty.jpg", b"", content_type="image/jpeg")
    # WHEN they are read in pieces
    pieces = list(store.iter_chunks("users/u/a.jpg"))
    small = list(store.iter_chunks("users/u/a.jpg", chunk_bytes=1000))
    # THEN no piece is larger than asked and together they are the object
    assert [len(p) for p in pieces] == [1 << 20, 1 << 20, len(PAYLOAD) - (2 << 20)]
    assert b"".join(pieces) == PAYLOAD
    assert max(map(len, small)) == 1000 and b"".join(small) == PAYLOAD
    assert list(store.iter_chunks("users/u/empty.jpg")) == []
    with pytest.raises(ValueError):
        next(store.iter_chunks("users/u/a.jpg", chunk_bytes=0))


def test_a_missing_object_is_told_before_any_piece(store: ObjectStore) -> None:
    chunks = store.iter_chunks("users/u/gone.jpg")
    with pytest.raises(ObjectNotFound):
        next(chunks)
    with pytest.raises(StorageError):
        next(store.iter_chunks("../escape.jpg"))
