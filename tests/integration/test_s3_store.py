"""``S3Store`` against moto's S3."""

from __future__ import annotations

from typing import TYPE_CHECKING
from unittest import mock

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from labelkit.errors import ObjectNotFound, StorageError
from labelkit.settings import Settings
from labelkit.storage import ObjectStore, make_store
from labelkit.storage.s3 import S3Store
from tests.integration import aws_fixtures
from tests.integration.aws_fixtures import REGION
from tests.integration.store_listing_contract import check_listing_contract

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.aws

# Shared moto fixtures (assigned, not imported, so they read as module fixtures).
aws = aws_fixtures.aws
s3_client = aws_fixtures.s3_client

BUCKET = "labelkit-test-images"


@pytest.fixture
def bucket(s3_client: S3Client) -> str:
    s3_client.create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture
def store(s3_client: S3Client, bucket: str) -> S3Store:
    return S3Store(bucket, prefix="uploads/", region=REGION, client=s3_client)


def test_satisfies_the_protocol(store: S3Store) -> None:
    assert isinstance(store, ObjectStore)
    assert store.bucket == BUCKET


def test_round_trip_under_the_prefix(store: S3Store, s3_client: S3Client) -> None:
    # GIVEN an object put by relative key
    key = "users/u1/a b+c é.jpg"
    store.put(key, b"\xff\xd8jpeg", content_type="image/jpeg")
    # THEN it reads back, exists, and is stored under the prefix with type and encryption
    assert store.get(key) == b"\xff\xd8jpeg"
    assert store.exists(key)
    head = s3_client.head_object(Bucket=BUCKET, Key="uploads/" + key)
    assert head["ContentType"] == "image/jpeg"
    assert head["ServerSideEncryption"] == "AES256"
    listed = s3_client.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert [o["Key"] for o in listed] == ["uploads/" + key]


def test_delete_and_missing_keys(store: S3Store) -> None:
    store.put("x.png", b"png", content_type="image/png")
    store.delete("x.png")
    assert not store.exists("x.png")
    with pytest.raises(ObjectNotFound):
        store.get("x.png")
    store.delete("x.png")  # missing is fine


def test_prefix_mapping(store: S3Store) -> None:
    assert store.full_key("users/u/1.jpg") == "uploads/users/u/1.jpg"
    assert store.relative_key("uploads/users/u/1.jpg") == "users/u/1.jpg"
    with pytest.raises(StorageError):
        store.relative_key("elsewhere/users/u/1.jpg")
    with pytest.raises(StorageError):
        store.relative_key("uploads/../etc/passwd")
    no_prefix = S3Store(BUCKET, region=REGION, client=store.client)
    assert no_prefix.full_key("a/b.jpg") == "a/b.jpg"
    assert no_prefix.relative_key("a/b.jpg") == "a/b.jpg"


@pytest.mark.parametrize("key", ["", "../x", "/etc/passwd", "a/../../b", "a\\b", "a\x00b", "a//b"])
def test_hostile_keys_are_rejected(store: S3Store, key: str) -> None:
    with pytest.raises(StorageError):
        store.put(key, b"x", content_type="image/png")
    with pytest.raises(StorageError):
        store.get(key)
    with pytest.raises(StorageError):
        store.full_key(key)


def test_sse_can_be_turned_off(s3_client: S3Client, bucket: str) -> None:
    store = S3Store(bucket, region=REGION, sse="", client=s3_client)
    store.put("plain.png", b"png", content_type="image/png")
    assert "ServerSideEncryption" not in s3_client.head_object(Bucket=bucket, Key="plain.png")


def test_missing_bucket_is_a_storage_error(s3_client: S3Client) -> None:
    store = S3Store("no-such-bucket", region=REGION, client=s3_client)
    with pytest.raises(StorageError) as info:
        store.put("a.png", b"x", content_type="image/png")
    assert isinstance(info.value.__cause__, ClientError)
    with pytest.raises(StorageError):
        store.get("a.png")


def test_network_errors_are_storage_errors(store: S3Store) -> None:
    with (
        mock.patch.object(
            store.client,
            "get_object",
            autospec=True,
            side_effect=EndpointConnectionError(endpoint_url="https://s3.example"),
        ),
        pytest.raises(StorageError) as info,
    ):
        store.get("a.png")
    assert not isinstance(info.value, ObjectNotFound)


def test_presigned_url(store: S3Store) -> None:
    store.put("users/u/p q.jpg", b"x", content_type="image/jpeg")
    url = store.presigned_url("users/u/p q.jpg", expires=60)
    # moto checks neither signature nor expiry: check the URL's shape (SigV4, 60 s).
    assert url.startswith(f"https://{BUCKET}.s3.amazonaws.com/uploads/users/u/p%20q.jpg?")
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
    assert "X-Amz-Expires=60" in url


def test_client_is_built_lazily(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import labelkit.aws

    calls: list[str] = []
    real = labelkit.aws.client

    def counting(service: str, *, region: str, client: object | None = None) -> object:
        calls.append(service)
        return real(service, region=region, client=client)

    monkeypatch.setattr(labelkit.aws, "client", counting)
    # WHEN the store is constructed THEN no client exists yet
    store = S3Store(BUCKET, region=REGION)
    assert calls == []
    # WHEN it is first used THEN one client is built and reused
    store.client.create_bucket(Bucket=BUCKET)
    store.put("a.txt", b"a", content_type="text/plain")
    assert store.get("a.txt") == b"a"
    assert calls == ["s3"]


def test_make_store_from_settings(tmp_path: object) -> None:
    store = make_store(Settings(storage_url="s3://bucket-x/some/prefix", s3_sse="aws:kms"))
    assert isinstance(store, S3Store)
    assert store.bucket == "bucket-x"
    assert store.full_key("k.jpg") == "some/prefix/k.jpg"
    assert store.sse == "aws:kms"


# --------------------------------------------------------------------------- listing a folder


def test_listing_a_folder_follows_the_contract(store: S3Store) -> None:
    check_listing_contract(store)


def test_listing_stays_in_the_prefix_and_follows_continuation_pages(
    store: S3Store, s3_client: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN objects under the store's prefix and beside it, and keys Labelkit never writes
    for n in range(5):
        store.put(f"thumbs/{n}.jpg", b"x", content_type="image/jpeg")
    s3_client.put_object(Bucket=BUCKET, Key="thumbs/outside-the-prefix.jpg", Body=b"x")
    s3_client.put_object(Bucket=BUCKET, Key="uploads/thumbs/odd//key.jpg", Body=b"x")
    # AND S3 pages of two keys (its page is 1,000: the continuation token is the same)
    monkeypatch.setattr("labelkit.storage.s3.LIST_PAGE", 2)
    calls: list[dict[str, object]] = []
    real = s3_client.list_objects_v2

    def counted(**kwargs: object) -> object:
        calls.append(kwargs)
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(s3_client, "list_objects_v2", counted)
    # WHEN the folder is listed THEN its relative keys come back, across pages
    keys = [o.key for o in store.list_objects("thumbs/", limit=100)]
    assert keys == [f"thumbs/{n}.jpg" for n in range(5)]
    assert len(calls) >= 3 and all(c["Prefix"] == "uploads/thumbs/" for c in calls)
    assert any("ContinuationToken" in c for c in calls)
    # AND "after" is sent as the full key
    calls.clear()
    assert [o.key for o in store.list_objects("thumbs/", after="thumbs/2.jpg", limit=1)] == ["thumbs/3.jpg"]
    assert calls[0]["StartAfter"] == "uploads/thumbs/2.jpg" and calls[0]["MaxKeys"] == 1


def test_a_listing_the_bucket_refuses_is_a_storage_error(s3_client: S3Client) -> None:
    store = S3Store("no-such-bucket", region=REGION, client=s3_client)
    with pytest.raises(StorageError) as info:
        store.list_objects("thumbs/")
    assert isinstance(info.value.__cause__, ClientError)
