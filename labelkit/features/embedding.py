"""The image embedding behind "similar photos" (issue #18): the local classifier's pooled
features, reduced to a compact unit vector.

* **Source.** EfficientNet-Lite's last feature map (N, 1280, h, w), globally average-pooled:
  the 1280-d vector its linear classifier reads. The :class:`~labelkit.labelers.local.LocalLabeler`
  keeps the pooled vector of the image it has just labelled, so the extractor does not run
  the classifier a second time (:meth:`~labelkit.labelers.local.LocalLabeler.pooled_features`).
* **Reduction.** A fixed, seeded random orthogonal projection 1280 -> 256 (``EMBED_DIM``):
  PCA would need more photos than ship in packages; a random orthogonal map keeps inner
  products on average (Johnson-Lindenstrauss) and needs no data. Measured on the
  development photos (``bench/similar.py --devset``): the compact vectors' top 10
  neighbours agree with the full 1280-d vectors' (recall@10 in the README).
* **Blob** (the contract other modules read): little-endian float16, L2-normalised,
  ``EMBED_DIM`` values (512 bytes). ``embedding_model`` names model, precision and
  reduction; only embeddings of the same ``embedding_model`` are compared.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from labelkit.domain import ImageFeatures
from labelkit.features import FeatureInput

#: Dimensions of the stored embedding, and the projection's seed (part of the model name).
EMBED_DIM = 256
PROJECTION_SEED = 18
#: Bump when the way the vector is made changes (pooling, projection, normalisation).
EMBED_FORMAT = 1


def pack(vec: np.ndarray | Sequence[float]) -> bytes:
    """A vector as the stored blob: L2-normalised, little-endian float16."""
    v = np.asarray(vec, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("cannot store a zero or non-finite embedding")
    return (v / norm).astype("<f2").tobytes()


def unpack(blob: bytes) -> np.ndarray:
    """A stored blob as a float32 unit vector (renormalised after float16 rounding)."""
    v = np.frombuffer(blob, dtype="<f2").astype(np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def unpack_many(blobs: Sequence[bytes], dim: int = EMBED_DIM) -> np.ndarray:
    """Blobs of one dimension as an (n, dim) float32 matrix of unit rows, in one pass."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    m = np.frombuffer(b"".join(blobs), dtype="<f2").reshape(len(blobs), -1).astype(np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    m /= norms
    return m


@functools.cache
def projection(in_dim: int, out_dim: int = EMBED_DIM, seed: int = PROJECTION_SEED) -> np.ndarray:
    """A fixed (in_dim, out_dim) matrix with orthonormal columns, the same on every machine:
    QR of a seeded Gaussian matrix with the signs fixed (R's diagonal made positive), so
    the result does not depend on the LAPACK build."""
    gauss = np.random.default_rng(seed).standard_normal((in_dim, out_dim))
    q, r = np.linalg.qr(gauss)
    q *= np.sign(np.diag(r))
    q.flags.writeable = False
    return q.astype(np.float32)


def compact(pooled: np.ndarray, dim: int = EMBED_DIM) -> np.ndarray:
    """The pooled features (C,) or (n, C) projected to ``dim`` and L2-normalised."""
    x = np.asarray(pooled, dtype=np.float32)
    y = x @ projection(x.shape[-1], dim)
    norms = np.linalg.norm(y, axis=-1, keepdims=True)
    return np.asarray(y / np.where(norms == 0, 1.0, norms), dtype=np.float32)


@runtime_checkable
class PooledFeatures(Protocol):
    """What the extractor needs of a labeller: the pooled features of bytes it labelled."""

    @property
    def uses_classifier(self) -> bool: ...

    def pooled_features(self, data: bytes) -> np.ndarray: ...


class EmbeddingExtractor:
    """Stores the compact embedding of each labelled image (a ``FeatureExtractor``)."""

    name = "embedding"

    def __init__(self, source: PooledFeatures, model_name: str) -> None:
        self.source = source
        self.model_name = model_name

    def extract(self, image: FeatureInput) -> ImageFeatures:
        vec = compact(self.source.pooled_features(image.data))
        return ImageFeatures(embedding=pack(vec), embedding_model=self.model_name)


def embedding_model_name(classifier_stem: str, precision: str) -> str:
    """``<model>-<precision>-gap-rp<dim>s<seed>-f16v<format>``, at most 64 characters."""
    return f"{classifier_stem}-{precision}-gap-rp{EMBED_DIM}s{PROJECTION_SEED}-f16v{EMBED_FORMAT}"[:64]


def extractor_for(labelers: Sequence[object]) -> EmbeddingExtractor | None:
    """The embedding extractor over the first local labeller that runs the classifier, or
    None (Rekognition only: no local classifier, no embedding, no similar photos)."""
    for labeler in labelers:
        if isinstance(labeler, PooledFeatures) and labeler.uses_classifier:
            classifier = getattr(labeler, "classifier", None)
            stem = getattr(getattr(classifier, "spec", None), "stem", "local")
            precision = getattr(classifier, "precision", "fp32")
            return EmbeddingExtractor(labeler, embedding_model_name(str(stem), str(precision)))
    return None
