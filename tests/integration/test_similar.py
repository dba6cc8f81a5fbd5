"""Similar photos (labelkit.similar) through the real pipeline and the real local classifier:
a photo's own near copies (resized, recompressed, slightly cropped) come before different
photos; another person's photos are never returned; an image without an embedding has no
similar photos. SQLite and MariaDB."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import update

from labelkit import similar
from labelkit.db.engine import transaction
from labelkit.db.models import ImageFeatureRow
from labelkit.db.queries import users as user_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import ImageFeatures, Viewer
from labelkit.errors import NotFound
from labelkit.features import embedding
from labelkit.services import Services, build_pipeline, build_services
from labelkit.settings import Settings
from labelkit.uploads import delete_image, upload_image
from labelkit.worker import Listener

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "data" / "models"


def _photo(name: str) -> Image.Image:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return Image.fromarray(np.asarray(load_sample_image(f"{name}.jpg")))
    from skimage import data as skdata

    return Image.fromarray(np.asarray(getattr(skdata, name)())).convert("RGB")


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _variants(im: Image.Image) -> dict[str, bytes]:
    w, h = im.size
    return {
        "resized": _jpeg(im.resize((w // 2, h // 2), Image.Resampling.LANCZOS)),
        "recompressed": _jpeg(im, quality=35),
        "cropped": _jpeg(im.crop((w // 20, h // 20, w - w // 20, h - h // 20))),
    }


@pytest.fixture
def services(settings: Settings) -> Services:
    return build_services(
        settings.model_copy(update={"labeler": "local", "local_models": "classifier", "model_dir": MODEL_DIR})
    )


def _drain(services: Services) -> None:
    Listener(
        queue=services.queue,
        pipeline=build_pipeline(services),
        workers=1,
        wait_seconds=1,
        visibility_timeout=services.settings.queue_visibility_timeout,
    ).run(threading.Event(), drain=True)


def _user(services: Services, name: str) -> Viewer:
    with transaction(services.engine) as s:
        return Viewer(user_id=user_q.create_user(session=s, username=name, password_hash="x").id)


def _upload(services: Services, owner: Viewer, name: str, data: bytes) -> str:
    up = upload_image(services=services, owner_id=owner.user_id, filename=f"{name}.jpg", data=data)
    assert up.image_id is not None
    return up.image_id


@pytest.mark.model
def test_near_copies_come_first_and_other_owners_never(services: Services) -> None:
    similar.clear_cache()
    ann, bob = _user(services, "ann"), _user(services, "bob")
    # GIVEN Ann's cat photo, three near copies of it and four different photos, and Bob's
    # copy of the same cat photo
    cat = _photo("chelsea")
    original = _upload(services, ann, "chelsea", _jpeg(cat))
    copies = {_upload(services, ann, name, data) for name, data in _variants(cat).items()}
    others = {
        _upload(services, ann, name, _jpeg(_photo(name)))
        for name in ("astronaut", "coffee", "rocket", "china")
    }
    bobs = _upload(services, bob, "chelsea", _jpeg(cat))
    # WHEN the worker labels them
    _drain(services)

    with transaction(services.engine) as s:
        found = similar.similar_images(session=s, viewer=ann, image_id=original)
        admin_view = similar.similar_images(
            session=s, viewer=Viewer(user_id="root", is_admin=True), image_id=original, limit=3
        )
        bob_sees = similar.similar_images(session=s, viewer=bob, image_id=bobs)
        # Bob cannot ask about Ann's photo at all.
        with pytest.raises(NotFound):
            similar.similar_images(session=s, viewer=bob, image_id=original)

    # THEN the near copies come first, then the different photos, all Ann's, best first
    ids = [i for i, _ in found]
    assert set(ids[:3]) == copies
    assert set(ids[3:]) == others
    scores = [score for _, score in found]
    assert scores == sorted(scores, reverse=True)
    assert min(scores[:3]) > max(scores[3:])
    assert bobs not in ids and original not in ids
    # An admin looking at Ann's photo gets Ann's photos; Bob gets nothing of Ann's.
    assert {i for i, _ in admin_view} == copies
    assert bob_sees == []


@pytest.mark.model
def test_the_stored_embedding_is_the_compact_unit_vector(services: Services) -> None:
    ann = _user(services, "ann")
    image_id = _upload(services, ann, "coffee", _jpeg(_photo("coffee")))
    _drain(services)
    with transaction(services.engine) as s:
        row = s.get(ImageFeatureRow, image_id)
        assert row is not None and row.embedding is not None
        assert row.embedding_model == embedding.embedding_model_name(
            "efficientnet-lite2", services.settings.local_precision
        )
        vec = embedding.unpack(row.embedding)
    assert vec.shape == (embedding.EMBED_DIM,)
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5


def test_images_without_embeddings_and_deleted_images(services: Services) -> None:
    """No model: embeddings written directly, as the worker writes them."""
    similar.clear_cache()
    ann = _user(services, "ann")
    rng = np.random.default_rng(5)
    base = rng.standard_normal(embedding.EMBED_DIM)
    ids = [_upload(services, ann, f"p{i}", _jpeg(_photo("coffee").resize((60 + i, 40)))) for i in range(4)]
    model = "test-model"
    with transaction(services.engine) as s:
        for n, image_id in enumerate(ids[:3]):
            worker_q.save_features(
                session=s,
                image_id=image_id,
                features=ImageFeatures(
                    embedding=embedding.pack(base + 0.1 * n * rng.standard_normal(base.shape)),
                    embedding_model=model,
                ),
            )
    with transaction(services.engine) as s:
        # An image with no features row, and one whose row has no embedding: nothing similar.
        assert similar.similar_images(session=s, viewer=ann, image_id=ids[3]) == []
        worker_q.save_features(session=s, image_id=ids[3], features=ImageFeatures(phash="0" * 16))
    with transaction(services.engine) as s:
        assert similar.similar_images(session=s, viewer=ann, image_id=ids[3]) == []
        assert [i for i, _ in similar.similar_images(session=s, viewer=ann, image_id=ids[0])] == ids[1:3]

    # A photo deleted after the owner's matrix was loaded is not returned.
    delete_image(services=services, viewer=ann, image_id=ids[1])
    with transaction(services.engine) as s:
        assert [i for i, _ in similar.similar_images(session=s, viewer=ann, image_id=ids[0])] == [ids[2]]
        # A changed embedding is picked up (the version check sees the newer updated_at).
        s.execute(
            update(ImageFeatureRow)
            .where(ImageFeatureRow.image_id == ids[2])
            .values(embedding=embedding.pack(-base))
        )
    with transaction(services.engine) as s:
        (hit,) = similar.similar_images(session=s, viewer=ann, image_id=ids[0])
    assert hit[0] == ids[2] and hit[1] < -0.5


def test_pack_unpack_round_trip() -> None:
    vec = np.arange(1, embedding.EMBED_DIM + 1, dtype=np.float64)
    blob = embedding.pack(vec)
    assert len(blob) == 2 * embedding.EMBED_DIM
    back = embedding.unpack(blob)
    assert back.dtype == np.float32
    assert float(back @ (vec / np.linalg.norm(vec))) > 0.9999
    with pytest.raises(ValueError):
        embedding.pack(np.zeros(4))


def test_a_similar_search_lists_the_photos_like_it_most_similar_first(services: Services) -> None:
    """``similar:<id>`` in the gallery's search box: the owner's photos most like that one,
    best first, each saying how similar, down to the calibrated cutoff (issue 24 item 4: it
    used to list every photo); the rest only when asked for; another user's photo id, a
    partial id and an unknown one say so."""
    from labelkit.search.service import Searcher

    similar.clear_cache()
    ann, bob = _user(services, "ann"), _user(services, "bob")
    rng = np.random.default_rng(7)
    base = rng.standard_normal(embedding.EMBED_DIM)
    base /= np.linalg.norm(base)

    def at(cosine: float) -> np.ndarray:
        """A unit vector whose cosine similarity to ``base`` is ``cosine``."""
        other = rng.standard_normal(embedding.EMBED_DIM)
        other -= (other @ base) * base
        return cosine * base + np.sqrt(1 - cosine**2) * other / np.linalg.norm(other)

    ids = [_upload(services, ann, f"s{i}", _jpeg(_photo("coffee").resize((70 + i, 50)))) for i in range(4)]
    bobs = _upload(services, bob, "b0", _jpeg(_photo("coffee").resize((90, 60))))
    cut = similar.SIMILAR_CUTOFF
    cosines = [1.0, 0.97, (1 + cut) / 2, cut - 0.15, 0.99]  # ids[0..3], then bob's
    with transaction(services.engine) as s:
        for image_id, cosine in zip([*ids, bobs], cosines, strict=True):
            worker_q.save_features(
                session=s,
                image_id=image_id,
                features=ImageFeatures(embedding=embedding.pack(at(cosine)), embedding_model="test-model"),
            )
    searcher = Searcher(services.settings.resolved_model_dir)
    with transaction(services.engine) as s:
        found = searcher.search(session=s, viewer=ann, text=f"similar:{ids[0]}")
        # THEN the photos above the cutoff, best first (bob's never, the photo itself never)
        assert [hit.image.id for hit in found.page.items] == ids[1:3]
        assert found.page.total == 2 and found.less_similar == 1 and found.notice is None
        assert [hit.why for hit in found.page.items] == [
            ["looks like s0.jpg: similarity 0.97"],
            [f"looks like s0.jpg: similarity {(1 + cut) / 2:.2f}"],
        ]
        # AND asking for more lists the less similar one too
        more = searcher.search(session=s, viewer=ann, text=f"similar:{ids[0]}", more=True)
        assert [hit.image.id for hit in more.page.items] == ids[1:] and more.less_similar == 0
        # AND another user's id finds nothing, said as for an id that does not exist
        theirs = searcher.search(session=s, viewer=bob, text=f"similar:{ids[0]}")
        assert (
            theirs.page.total == 0
            and theirs.notice == f"No photo of yours has the id {ids[0]}: it may have been deleted."
        )
        # AND a partial id (cut when copied) says what an id looks like
        partial = searcher.search(session=s, viewer=ann, text=f"similar:{ids[0][:10]}")
        assert partial.page.total == 0 and partial.notice is not None and "whole image id" in partial.notice
