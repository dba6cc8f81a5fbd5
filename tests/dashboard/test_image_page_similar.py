"""The image page's "Similar photos" strip (issue 18, item 2): the owner's most similar
photos, each linking to its own page, a "Show all similar" link to the gallery search, and
a plain sentence when the local model (the embedding's source) is not enabled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import streamlit as st

from labelkit import similar
from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.queries import worker as worker_q
from labelkit.domain import ImageFeatures, LabelResult
from labelkit.features import embedding
from labelkit.services import Services
from labelkit.settings import get_settings
from tests.dashboard.conftest import BLUE, GREEN, RED, app, jpeg, texts, upload

ROOT = Path(__file__).resolve().parents[2]


def _labelled_with_embeddings(
    services: Services, owner: Principal, photos: dict[str, bytes], cosines: list[float] | None = None
) -> dict[str, str]:
    """Upload ``photos`` and store them as labelled, with embeddings whose cosine similarity
    to the first photo's is ``cosines`` (default: ever less like it, all well above the cutoff)."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal(embedding.EMBED_DIM)
    base /= np.linalg.norm(base)
    cosines = cosines or [1.0 - 0.03 * n for n in range(len(photos))]

    def at(cosine: float) -> np.ndarray:
        other = rng.standard_normal(embedding.EMBED_DIM)
        other -= (other @ base) * base
        return cosine * base + np.sqrt(1 - cosine**2) * other / np.linalg.norm(other)

    ids = {name: upload(services, owner, name, data) for name, data in photos.items()}
    with transaction(services.engine) as s:
        for image_id, cosine in zip(ids.values(), cosines, strict=True):
            worker_q.save_model_labels(
                session=s, image_id=image_id, result=LabelResult(labels=[], model_version="m")
            )
            worker_q.mark_labelled(session=s, image_id=image_id, model_version="m", properties=None)
            worker_q.save_features(
                session=s,
                image_id=image_id,
                features=ImageFeatures(
                    embedding=embedding.pack(at(cosine)),
                    embedding_model="test-model",
                ),
            )
    return ids


def test_the_image_page_shows_similar_photos(
    services: Services, alice: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELKIT_LABELER", "local")
    monkeypatch.setenv("LABELKIT_LOCAL_MODELS", "classifier")
    monkeypatch.setenv("LABELKIT_MODEL_DIR", str(ROOT / "data" / "models"))
    get_settings.cache_clear()
    st.cache_resource.clear()
    similar.clear_cache()
    cut = similar.SIMILAR_CUTOFF
    ids = _labelled_with_embeddings(
        services,
        alice,
        {"query.jpg": RED, "near.jpg": GREEN, "far.jpg": BLUE, "other.jpg": jpeg((90, 90, 90))},
        [1.0, 0.96, (1 + cut) / 2, cut - 0.2],
    )
    # WHEN alice opens the first photo
    at = app(alice, "app_pages/image.py", image=ids["query.jpg"])
    assert not at.exception
    # THEN the strip shows her other photos like it, most similar first, each opening its page
    # and saying how similar; one below the cutoff is not shown as similar (issue 24 item 4)
    assert "Similar photos" in texts(at)
    links = list(at.get("page_link"))
    opened = [link.proto.query_string for link in links if "image=" in link.proto.query_string]
    assert opened == [f"image={ids[name]}" for name in ("near.jpg", "far.jpg")]
    shown = texts(at)
    assert "similarity 0.96" in shown and f"similarity {(1 + cut) / 2:.2f}" in shown
    (show_all,) = [link for link in links if link.proto.label == "Show all similar"]
    assert show_all.proto.query_string == f"label=similar%3A{ids['query.jpg']}"
    # The strip has one thumbnail per similar photo (beside the photo itself).
    assert len(at.image) >= 3
    # AND the page gives its id, and the search for photos like it, to copy
    codes = [c.value for c in at.code]
    assert ids["query.jpg"] in codes and f"similar:{ids['query.jpg']}" in codes


def test_when_nothing_is_much_alike_the_page_says_so(
    services: Services, alice: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELKIT_LABELER", "local")
    monkeypatch.setenv("LABELKIT_LOCAL_MODELS", "classifier")
    monkeypatch.setenv("LABELKIT_MODEL_DIR", str(ROOT / "data" / "models"))
    get_settings.cache_clear()
    st.cache_resource.clear()
    similar.clear_cache()
    cut = similar.SIMILAR_CUTOFF
    ids = _labelled_with_embeddings(services, alice, {"query.jpg": RED, "other.jpg": BLUE}, [1.0, cut - 0.2])
    at = app(alice, "app_pages/image.py", image=ids["query.jpg"])
    assert not at.exception
    assert "No photo of yours is much like this one" in texts(at)
    links = [link.proto.label for link in at.get("page_link")]
    assert "other.jpg" not in links and "Show the closest photos anyway" in links


def test_without_the_local_model_the_page_says_so(services: Services, alice: Principal) -> None:
    similar.clear_cache()
    ids = _labelled_with_embeddings(services, alice, {"query.jpg": RED, "near.jpg": GREEN})
    at = app(alice, "app_pages/image.py", image=ids["query.jpg"])
    assert not at.exception
    assert "Similar photos need the local model" in texts(at)


def test_the_gallery_lists_similar_photos_down_to_the_cutoff_and_the_rest_on_request(
    services: Services, alice: Principal
) -> None:
    """Issue 24 item 4: similar:<id> listed every photo ("42 images match") with no score."""
    similar.clear_cache()
    cut = similar.SIMILAR_CUTOFF
    ids = _labelled_with_embeddings(
        services,
        alice,
        {"query.jpg": RED, "near.jpg": GREEN, "far.jpg": BLUE, "other.jpg": jpeg((90, 90, 90))},
        [1.0, 0.96, (1 + cut) / 2, cut - 0.2],
    )
    # WHEN alice searches for photos like the first
    at = app(alice, "app_pages/gallery.py", label=f"similar:{ids['query.jpg']}")
    assert not at.exception
    shown = texts(at)
    # THEN the two alike are listed, each with its similarity; the other is offered apart
    assert "2 images match" in shown
    assert "looks like query.jpg: similarity 0.96" in shown and "other.jpg" not in shown
    more = at.button(key="similar_more")
    assert more.label == "Show 1 less similar photo"
    # WHEN she asks for it THEN it is listed too
    more.click().run()
    assert "3 images match" in texts(at) and "other.jpg" in texts(at)


def test_a_partial_or_unknown_id_says_so(services: Services, alice: Principal) -> None:
    similar.clear_cache()
    ids = _labelled_with_embeddings(services, alice, {"query.jpg": RED, "near.jpg": GREEN})
    at = app(alice, "app_pages/gallery.py", label=f"similar:{ids['query.jpg'][:12]}")
    assert "needs a whole image id" in texts(at) and "No photos match" not in texts(at)
    at = app(alice, "app_pages/gallery.py", label=f"similar:{'0' * 32}")
    assert f"No photo of yours has the id {'0' * 32}" in texts(at)
