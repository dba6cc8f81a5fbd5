"""Wiring: build the adapters the settings ask for, once per process.

Entry points (dashboard, listener, Lambda, CLIs) call :func:`build_services`
and :func:`build_pipeline` instead of constructing adapters themselves.
Nothing here talks to AWS or loads a model until first use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from labelkit.db.engine import get_engine
from labelkit.features import FeatureExtractor, embedding
from labelkit.features.phash import PerceptualHash
from labelkit.features.thumbnail import ThumbnailExtractor, thumbnail_maker
from labelkit.labelers import make_labelers, options_from
from labelkit.pipeline import Pipeline
from labelkit.queue import JobQueue, make_queue
from labelkit.settings import Settings
from labelkit.storage import ObjectStore, make_store

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    engine: Engine
    store: ObjectStore
    queue: JobQueue


def build_services(settings: Settings, *, migrate: bool = True) -> Services:
    """Engine, store and queue for ``settings``; migrates the database first if asked."""
    engine = get_engine(settings)
    if migrate:
        # Imported here: the Lambda never migrates and ships without Alembic's weight in mind.
        from labelkit.db.migrate import upgrade

        upgrade(engine)
    return Services(
        settings=settings,
        engine=engine,
        store=make_store(settings),
        queue=make_queue(settings, engine=engine),
    )


def build_pipeline(services: Services) -> Pipeline:
    settings = services.settings
    labelers = make_labelers(settings)
    # The similar-photos embedding comes from the local classifier's pooled features (none
    # without it: Rekognition only).
    embedder = embedding.extractor_for(labelers)
    extractors: list[FeatureExtractor] = [PerceptualHash(), ThumbnailExtractor()]
    extractors += [e for e in (embedder, face_extractor(settings)) if e is not None]
    return Pipeline(
        engine=services.engine,
        store=services.store,
        labelers=labelers,
        options=options_from(settings),
        max_receives=settings.queue_max_receives,
        extractors=extractors,
        make_thumbnail=thumbnail_maker(settings),
    )


def face_extractor(settings: Settings) -> FeatureExtractor | None:
    """The face describer behind people (issue #29), when grouping is on and its model is
    installed (a deployment without it, such as a slim Lambda package, groups no faces)."""
    if not settings.face_grouping:
        return None
    from labelkit.features.faces import FaceExtractor
    from labelkit.images import decode_rgb
    from labelkit.labelers.face_id import FaceEncoder

    encoder = FaceEncoder()
    if encoder.missing():
        logger.info("face grouping is off: %s", encoder.how_to_fix())
        return None
    max_pixels = settings.max_pixels
    return FaceExtractor(encoder, lambda data, side: decode_rgb(data, max_pixels=max_pixels, min_side=side))
