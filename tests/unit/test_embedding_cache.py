"""The search vocabulary's embeddings (issue 25, finding 2): one person's large vocabulary
never makes another person's search wait, and the cache stays bounded."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from labelkit.search.expand import EmbeddingCache, KnownLabel, Resolver

DEADLINE = 60.0


def _vector(text: str) -> np.ndarray:
    """A deterministic unit vector per text; texts sharing their first word are close."""
    head = text.split("-")[0]
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(head.encode()).digest()[:4], "little"))
    base = rng.standard_normal(384)
    noise = np.random.default_rng(len(text)).standard_normal(384) * 0.1
    v = base + noise
    return (v / np.linalg.norm(v)).astype(np.float32)


class GatedEmbedder:
    """Embeds instantly, except texts starting with ``slow``: those wait for ``gate`` (the
    3,000 names one person imported, embedding while others search)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls: list[int] = []

    def available(self) -> bool:
        return True

    def embed(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        self.calls.append(len(texts))
        if any(t.startswith("slow") for t in texts):
            assert self.gate.wait(DEADLINE), "the gate was never opened"
        return np.stack([_vector(t) for t in texts])


def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE} s: {what}")
        time.sleep(0.01)


def test_one_persons_vocabulary_never_makes_another_persons_search_wait(tmp_path: Path) -> None:
    embedder = GatedEmbedder()
    cache = EmbeddingCache(embedder, tmp_path)  # type: ignore[arg-type]
    common = [KnownLabel("dog"), KnownLabel("cat"), KnownLabel("beach")]
    # GIVEN alice, who imported 3,000 label names of her own, and bob, who has a few
    alice = Resolver([*common, *(KnownLabel(f"slow-name-{i}") for i in range(3000))], cache)
    bob = Resolver([*common, KnownLabel("dog-park")], cache)
    # WHEN alice searches for a word that is no label (her names must be embedded first) ...
    alice_done = threading.Event()
    alice_search = threading.Thread(target=lambda: (alice.resolve("slowly"), alice_done.set()), daemon=True)
    alice_search.start()
    _until(lambda: embedder.calls, "alice's search started embedding")
    # ... THEN bob's search for a word that is no label finishes while hers is still embedding
    found: list[object] = []
    bob_search = threading.Thread(target=lambda: found.append(bob.resolve("dog-friends")), daemon=True)
    bob_search.start()
    bob_search.join(DEADLINE)
    assert not bob_search.is_alive(), "bob's search waited for alice's embedding"
    assert not alice_done.is_set()
    assert found and found[0]  # bob's words still matched ("dog", "dog-park")
    # WHEN alice's embedding goes on THEN her search ends, without waiting for all 3,000
    embedder.gate.set()
    alice_search.join(DEADLINE)
    assert alice_done.is_set()
    assert max(embedder.calls) <= 256  # no single embedding call of the whole vocabulary
    # AND her names arrive in the background, and then match
    _until(lambda: len(cache) >= 3000, "alice's names were embedded in the background")
    assert any(r.term.startswith("slow-name") for r in alice.resolve("slow-name-x"))


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    embedder = GatedEmbedder()
    embedder.gate.set()
    cache = EmbeddingCache(embedder, tmp_path, limit=100)  # type: ignore[arg-type]
    resolver = Resolver([KnownLabel("dog")], cache)
    # WHEN many searches for words that are no label come in
    for i in range(600):
        resolver.resolve(f"nonsense{i}")
    # THEN the cache keeps at most its limit, the most recent ones
    assert len(cache) <= 100
    assert cache.known(["nonsense599"], budget=0)[0] == [0]
    assert cache.known(["nonsense0"], budget=0)[0] == []
