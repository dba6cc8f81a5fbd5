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
    services: Services, owner: Principal, photos: dict[str, bytes]
) -> dict[str, str]:
    """Upload ``photos`` and store them as labelled, with embeddings along one direction
    in the order given (the first is the query, the next ones ever less like it)."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal(embedding.EMBED_DIM)
    ids = {name: upload(services, owner, name, data) for name, data in photos.items()}
    with transaction(services.engine) as s:
        for n, image_id in enumerate(ids.values()):
            worker_q.save_model_labels(
                session=s, image_id=image_id, result=LabelResult(labels=[], model_version="m")
            )
            worker_q.mark_labelled(session=s, image_id=image_id, model_version="m", properties=None)
            worker_q.save_features(
                session=s,
                image_id=image_id,
                features=ImageFeatures(
                    embedding=embedding.pack(base + 0.3 * n * rng.standard_normal(base.shape)),
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
    ids = _labelled_with_embeddings(
        services,
        alice,
        {"query.jpg": RED, "near.jpg": GREEN, "far.jpg": BLUE, "other.jpg": jpeg((90, 90, 90))},
    )
    # WHEN alice opens the first photo
    at = app(alice, "app_pages/image.py", image=ids["query.jpg"])
    assert not at.exception
    # THEN the strip shows her other photos, most similar first, each opening its page
    assert "Similar photos" in texts(at)
    links = list(at.get("page_link"))
    opened = [link.proto.query_string for link in links if "image=" in link.proto.query_string]
    assert opened == [f"image={ids[name]}" for name in ("near.jpg", "far.jpg", "other.jpg")]
    labels = [link.proto.label for link in links]
    assert labels[labels.index("near.jpg") :][:3] == ["near.jpg", "far.jpg", "other.jpg"]
    (show_all,) = [link for link in links if link.proto.label == "Show all similar"]
    assert show_all.proto.query_string == f"label=similar%3A{ids['query.jpg']}"
    # The strip has one thumbnail per similar photo (beside the photo itself).
    assert len(at.image) >= 4


def test_without_the_local_model_the_page_says_so(services: Services, alice: Principal) -> None:
    similar.clear_cache()
    ids = _labelled_with_embeddings(services, alice, {"query.jpg": RED, "near.jpg": GREEN})
    at = app(alice, "app_pages/image.py", image=ids["query.jpg"])
    assert not at.exception
    assert "Similar photos need the local model" in texts(at)
