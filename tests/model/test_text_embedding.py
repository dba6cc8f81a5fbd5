"""The text-embedding model (search's related words): the ONNX export is reproducible, agrees
with sentence-transformers on torch, and the measured threshold still holds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from labelkit.labelers import text_build
from labelkit.search import expand, pairs
from labelkit.search.service import Searcher
from labelkit.search.text_model import TextEmbedder, TextModelFiles
from tests.model.conftest import MODEL_DIR

pytestmark = pytest.mark.model

SENTENCES = [
    "puppy",
    "Automobile",
    "a dog running on the beach",
    "people at the seaside, having a picnic under a big umbrella on a sunny afternoon",
]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    text_build.ensure_text_model(MODEL_DIR)
    return MODEL_DIR


@pytest.mark.slow
def test_export_is_reproducible(model_dir: Path, tmp_path: Path) -> None:
    # GIVEN the export make model wrote, WHEN the model is exported again elsewhere
    text_build.export(tmp_path)
    # THEN both give the same embeddings
    first = TextEmbedder(model_dir).embed(SENTENCES)
    second = TextEmbedder(tmp_path).embed(SENTENCES)
    assert np.abs(first - second).max() <= 1e-6
    # AND the second export is current by its own manifest
    assert text_build.is_current(tmp_path)


def test_onnx_matches_sentence_transformers(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    want = SentenceTransformer(str(text_build.source_dir()), device="cpu").encode(SENTENCES)
    got = TextEmbedder(model_dir).embed(SENTENCES)
    assert got.shape == (len(SENTENCES), 384)
    assert np.abs(got - want).max() <= 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_changed_file_is_exported_again(model_dir: Path, tmp_path: Path) -> None:
    # GIVEN a copy of the export whose tokenizer was replaced by hand
    files, copy = TextModelFiles.of(model_dir), TextModelFiles.of(tmp_path)
    for src, dst in zip(files.all(), copy.all(), strict=True):
        dst.write_bytes(src.read_bytes())
    assert text_build.is_current(tmp_path)
    copy.tokenizer.write_text("{}")
    # THEN it is not current
    assert not text_build.is_current(tmp_path)


def test_vocabulary_embeddings_are_precomputed(model_dir: Path) -> None:
    # make model wrote the catalogue's embeddings, so a search process need not compute them
    assert text_build.vocab_is_current(model_dir)
    searcher = Searcher(model_dir)
    strings = searcher.resolver().strings
    indices, _ = searcher.cache.known(strings, budget=0)  # nothing embedded on the spot
    assert len(indices) == len(strings)
    # and they are what the model gives
    direct = searcher.embedder.embed(strings[:5])
    assert np.abs(searcher.cache.vectors(strings[:5]) - direct).max() <= 1e-5


def test_the_measured_threshold_holds(model_dir: Path) -> None:
    # The README's table: at the chosen threshold, 16 of 19 positive pairs and 5 of 18
    # negative pairs (precision 0.76).
    resolver = Searcher(model_dir).resolver()
    assert resolver.threshold == expand.RELATED_THRESHOLD
    found = {(w, lab) for w, lab in (*pairs.POSITIVE, *pairs.NEGATIVE) if lab in dict(resolver.related(w))}
    tp = len(found & set(pairs.POSITIVE))
    fp = len(found & set(pairs.NEGATIVE))
    assert tp >= 16 and fp <= 5
    # and the words: names and aliases, no model needed
    for word, label in [
        ("puppy", "Dog"),
        ("automobile", "Car"),
        ("seaside", "Beach"),
        ("people", "Person"),
        ("kitten", "Cat"),
        ("animal", "Animal"),
    ]:
        assert label in {r.term for r in resolver.resolve(word)}, word
