"""From a typed word to the image terms it stands for (term expansion).

A query term (folded, see :mod:`labelkit.search.query`) matches, case-insensitively:

1. a **label name** (``dog`` -> ``Dog``), also as a parent of other labels (``animal`` ->
   ``Animal``, which cats and dogs carry as a parent); singular and plural forms are the
   same word (``dogs`` -> ``Dog``, ``people`` -> ``Person``, ``buses`` -> ``Bus``);
2. an **alias** of a label (``puppy`` -> ``Dog``, "Dog, alias Puppy"; ``automobile`` -> ``Car``);
3. a **category** (``animals and pets``);
4. only when none of the above matched: **related words** through the text model
   (:mod:`labelkit.search.text_model`, all-MiniLM-L6-v2): every label whose name or an
   alias is at least :data:`RELATED_THRESHOLD` cosine-similar to the term and within
   :data:`RELATED_MARGIN` of the best such label (``doggy`` -> ``Dog``; ``shore`` ->
   ``Shoreline``). Parents of a label already related are left out (the label's images
   carry them anyway, and "dog" is not "any animal").

Why related words only for unknown words: for a word that *is* a label, its nearest labels
are its neighbours, not synonyms (``dog`` is 0.72 from ``Hot Dog``, ``cat`` 0.75 from ``Cat
Bear``), and the word's own matches are already exact. The threshold was measured on word ->
label pairs (:mod:`labelkit.search.pairs`, README "Search").

The vocabulary is the labeller catalogue's names, aliases, parents and categories
(:func:`catalog_labels`) plus the names the viewer's own images carry (people add labels of
their own). The catalogue's embeddings are computed once at ``make model`` (the
``minilm-l6-v2.vocab.npz`` beside the model) or, if that file is missing or stale, once per
process; other strings are embedded on first use and kept.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from labelkit.db.models import TermKind
from labelkit.db.queries.labels import KnownDetails
from labelkit.db.queries.search import TermRef
from labelkit.search.text_model import DIMENSION, STEM, TextEmbedder
from labelkit.vocabulary import fold, tidy

logger = logging.getLogger(__name__)

#: Cosine similarity a label (its name or an alias) needs to a term to count as related
#: (measured on labelkit/search/pairs.py: see the README's "Search" section).
RELATED_THRESHOLD = 0.65
#: Related labels must be this close to the best related label (keeps the tail out).
RELATED_MARGIN = 0.08
#: At most this many related labels per term.
RELATED_LIMIT = 4
#: Strings a search embeds itself at most (the rest of a large vocabulary: in the background).
SYNC_BUDGET = 256
#: Strings embedded per background batch.
BACKGROUND_BATCH = 128
#: Vectors kept besides the catalogue's (least recently used ones leave first; ~1.5 kB each).
CACHE_LIMIT = 20_000

VOCAB_FORMAT = 1

_IRREGULAR = {
    "people": "person",
    "persons": "person",
    "men": "man",
    "women": "woman",
    "children": "child",
    "mice": "mouse",
    "geese": "goose",
    "feet": "foot",
    "teeth": "tooth",
    "oxen": "ox",
    "knives": "knife",
    "leaves": "leaf",
    "wolves": "wolf",
    "shelves": "shelf",
}


def word_forms(term: str) -> list[str]:
    """The term and its singular forms (``puppies`` -> ``puppy``; the last word of a phrase)."""
    forms = [term]
    head, _, last = term.rpartition(" ")
    prefix = f"{head} " if head else ""
    candidates = []
    if last in _IRREGULAR:
        candidates.append(_IRREGULAR[last])
    if len(last) > 3 and last.endswith("ies"):
        candidates.append(last[:-3] + "y")
    if len(last) > 3 and last.endswith(("ses", "xes", "zes", "ches", "shes", "oes")):
        candidates.append(last[:-2])
    if len(last) > 2 and last.endswith("s") and not last.endswith(("ss", "us", "is")):
        candidates.append(last[:-1])
    for c in candidates:
        if prefix + c not in forms:
            forms.append(prefix + c)
    return forms


@dataclass(frozen=True, slots=True)
class KnownLabel:
    name: str
    aliases: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


@lru_cache(maxsize=1)
def catalog_labels() -> tuple[KnownLabel, ...]:
    """Every label the local labeller can return (classifier rules, detector and face
    fusion, scenes, text, moderation), with its aliases, parents and categories."""
    from labelkit.domain import MODERATION_ALIASES, MODERATION_CATEGORY
    from labelkit.labelers import ocr
    from labelkit.labelers.fusion import load_fusion
    from labelkit.labelers.scenes import load_scenes
    from labelkit.labelers.taxonomy import load_rules

    rules = load_rules()
    merged: dict[str, KnownLabel] = {}

    def add(name: str, aliases: Iterable[str], parents: Iterable[str], categories: Iterable[str]) -> None:
        old = merged.get(name, KnownLabel(name))
        merged[name] = KnownLabel(
            name,
            tuple(dict.fromkeys([*old.aliases, *aliases])),
            tuple(dict.fromkeys([*old.parents, *parents])),
            tuple(dict.fromkeys([*old.categories, *categories])),
        )

    for e in rules.entries:
        add(e.name, e.aliases, e.parents, e.categories)
    for k in load_fusion(rules).kinds.values():
        add(k.name, k.aliases, k.parents, k.categories)
    for s in load_scenes(rules).scenes:
        add(s.name, s.aliases, s.parents, s.categories)
    for name, known in ocr.CATALOGUE.items():
        add(name, known["aliases"], known["parents"], known["categories"])
    for name, aliases in MODERATION_ALIASES.items():
        add(name, aliases, (), (MODERATION_CATEGORY,))
    return tuple(merged[n] for n in sorted(merged))


@lru_cache(maxsize=1)
def _catalog_by_fold() -> dict[str, KnownLabel]:
    return {fold(lab.name): lab for lab in catalog_labels()}


def catalog_label(name: str) -> KnownLabel | None:
    """The catalogue's label ``name`` is, spelled the catalogue's way (``"beach"`` -> Beach,
    with its aliases, parents and categories), or None for a name of one's own."""
    return _catalog_by_fold().get(fold(name))


def known_details(name: str) -> KnownDetails | None:
    """What a person's label of a catalogue name stores when the image has no model label
    of that name to copy it from (its parents, aliases and categories)."""
    found = catalog_label(name)
    if found is None:
        return None
    return KnownDetails(parents=found.parents, aliases=found.aliases, categories=found.categories)


def strings_digest(strings: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(strings).encode()).hexdigest()


def vocab_path(model_dir: Path) -> Path:
    return Path(model_dir) / f"{STEM}.vocab.npz"


class EmbeddingCache:
    """Unit vectors of vocabulary strings, computed once (or read from the build's file), and
    shared by every search of the process.

    No search waits for another's embedding work (issue 25): the lock guards the dictionary
    only, never the model. A search embeds at most :data:`SYNC_BUDGET` strings it needs on
    the spot (its own words first); the rest of a large vocabulary (a person who imported
    3,000 label names) is embedded by one background thread, batch by batch, and the search
    goes on with the vectors known so far. Vectors other than the catalogue's are kept for the
    :data:`CACHE_LIMIT` most recently used strings (least recently used ones leave first).
    """

    def __init__(self, embedder: TextEmbedder, model_dir: Path, *, limit: int | None = None) -> None:
        self.embedder = embedder
        self.model_dir = Path(model_dir)
        self.limit = CACHE_LIMIT if limit is None else limit
        self._lock = threading.Lock()
        self._pinned: dict[str, np.ndarray] = {}  # the catalogue's vectors (from the build's file)
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()  # others, least recently used first
        self._preloaded = False
        self._queued: set[str] = set()
        self._todo: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None

    def _preload(self) -> None:
        with self._lock:
            if self._preloaded:
                return
            self._preloaded = True
        path = vocab_path(self.model_dir)
        try:
            with np.load(path) as data:
                onnx_sha = str(data["onnx_sha256"])
                if int(data["format"]) != VOCAB_FORMAT or onnx_sha != _manifest_onnx_sha(self.model_dir):
                    logger.info("%s is stale; embedding the vocabulary in process", path)
                    return
                loaded = {
                    str(s): np.asarray(v, dtype=np.float32)
                    for s, v in zip(data["strings"].tolist(), data["vectors"], strict=True)
                }
        except (OSError, KeyError, ValueError):
            logger.info("no usable %s; embedding the vocabulary in process", path)
            return
        with self._lock:
            self._pinned.update(loaded)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pinned) + len(self._recent)

    def _get(self, strings: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors already known, marking them recently used (under the lock)."""
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for s in strings:
                v = self._pinned.get(s)
                if v is None:
                    v = self._recent.get(s)
                    if v is not None:
                        self._recent.move_to_end(s)
                if v is not None:
                    found[s] = v
        return found

    def _put(self, strings: Sequence[str], vectors: np.ndarray) -> None:
        with self._lock:
            for s, v in zip(strings, vectors, strict=True):
                if s in self._pinned:
                    continue
                self._recent[s] = v
                self._recent.move_to_end(s)
                self._queued.discard(s)
            while len(self._recent) > self.limit:
                self._recent.popitem(last=False)

    def _embed(self, strings: Sequence[str]) -> None:
        """Embed outside the lock (two searches may embed one string twice: harmless)."""
        if strings:
            self._put(list(strings), self.embedder.embed(list(strings), batch_size=128))

    def warm(self, strings: Sequence[str]) -> None:
        """Embed these strings in the background (those not known or queued yet)."""
        self._preload()
        known = self._get(strings)
        with self._lock:
            todo = sorted({s for s in strings if s not in known and s not in self._queued}, key=len)
            self._queued.update(todo)
            if not todo:
                return
            for start in range(0, len(todo), BACKGROUND_BATCH):
                self._todo.put(todo[start : start + BACKGROUND_BATCH])
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._drain, name="vocabulary-embedding", daemon=True)
                self._worker.start()

    def _drain(self) -> None:
        while True:
            try:
                batch = self._todo.get(timeout=5)
            except queue.Empty:
                return
            try:
                self._embed(batch)
            except Exception:  # the model failed: the strings stay unknown, searches go on without them
                logger.exception("embedding %d vocabulary strings failed", len(batch))
                with self._lock:
                    self._queued.difference_update(batch)

    def known(self, strings: Sequence[str], *, budget: int = SYNC_BUDGET) -> tuple[list[int], np.ndarray]:
        """(indices into ``strings``, their vectors) for the strings with a vector now: those
        already known, plus up to ``budget`` more embedded on the spot (the first ones given);
        the others are queued for the background and left out of this answer."""
        self._preload()
        found = self._get(strings)
        missing = list(dict.fromkeys(s for s in strings if s not in found))
        now, later = missing[:budget], missing[budget:]
        if now:
            self._embed(now)
            found.update(self._get(now))
        if later:
            self.warm(later)
        indices = [i for i, s in enumerate(strings) if s in found]
        if not indices:
            return [], np.zeros((0, DIMENSION), dtype=np.float32)
        return indices, np.stack([found[strings[i]] for i in indices])

    def vectors(self, strings: Sequence[str]) -> np.ndarray:
        """Every string's vector, embedding what is missing (for a few strings, e.g. a query)."""
        indices, matrix = self.known(strings, budget=len(strings))
        if len(indices) != len(strings):  # evicted meanwhile by other searches: embed again
            return self.embedder.embed(list(strings), batch_size=128)
        return matrix


def _manifest_onnx_sha(model_dir: Path) -> str:
    import json

    try:
        return str(json.loads((Path(model_dir) / f"{STEM}.json").read_text()).get("onnx_sha256", ""))
    except (OSError, ValueError):
        return ""


@dataclass
class Resolver:
    """Resolves query terms against a vocabulary (see the module docstring)."""

    labels: Sequence[KnownLabel]
    cache: EmbeddingCache | None = None
    threshold: float = RELATED_THRESHOLD
    margin: float = RELATED_MARGIN
    limit: int = RELATED_LIMIT
    _names: dict[str, list[str]] = field(default_factory=dict, init=False)  # folded -> spellings
    _aliases: dict[str, list[tuple[str, str]]] = field(default_factory=dict, init=False)
    _categories: dict[str, str] = field(default_factory=dict, init=False)
    _parents: dict[str, tuple[str, ...]] = field(default_factory=dict, init=False)
    _strings: list[str] = field(default_factory=list, init=False)  # names and aliases
    _owner_of: dict[str, list[str]] = field(default_factory=dict, init=False)  # string -> names

    def __post_init__(self) -> None:
        for lab in self.labels:
            self._add_name(lab.name)
            self._parents[lab.name] = tuple(lab.parents)
            for parent in lab.parents:
                self._add_name(parent)
            for alias in lab.aliases:
                key = fold(alias)
                if key and (lab.name, tidy(alias)) not in self._aliases.get(key, []):
                    self._aliases.setdefault(key, []).append((lab.name, tidy(alias)))
                self._own(tidy(alias), lab.name)
            for cat in lab.categories:
                self._categories.setdefault(fold(cat), tidy(cat))
        self._strings = sorted(self._owner_of)

    @property
    def strings(self) -> list[str]:
        """The names and aliases related words are compared against."""
        return list(self._strings)

    def _add_name(self, name: str) -> None:
        key = fold(name)
        if key and tidy(name) not in self._names.get(key, []):
            self._names.setdefault(key, []).append(tidy(name))
        self._own(tidy(name), tidy(name))

    def _own(self, string: str, name: str) -> None:
        if string and name not in self._owner_of.setdefault(string, []):
            self._owner_of[string].append(name)

    @staticmethod
    def _label_refs(name: str, why: str) -> list[TermRef]:
        # A name is carried as a label, or as a parent by the images of its children.
        return [TermRef(TermKind.LABEL, name, why), TermRef(TermKind.PARENT, name, why)]

    def spellings(self, name: str) -> list[str]:
        """Every spelling of ``name`` in the vocabulary (the catalogue's "Beach" and a person's
        "beach" are one label: SQLite compares terms case-sensitively, so each is searched)."""
        return self._names.get(fold(name), []) or [name]

    def direct(self, term: str) -> list[TermRef]:
        """Names, aliases and categories the term (or its singular) is."""
        refs: list[TermRef] = []
        for form in word_forms(term):
            for name in self._names.get(form, []):
                refs += self._label_refs(name, "")
            for name, alias in self._aliases.get(form, []):
                if fold(name) != form:
                    for spelling in self.spellings(name):
                        refs += self._label_refs(spelling, f"alias {alias}")
            if form in self._categories:
                refs.append(TermRef(TermKind.CATEGORY, self._categories[form], "category"))
        return list(dict.fromkeys(refs))

    def related(self, term: str) -> list[tuple[str, float]]:
        """Labels related to the term through the text model: (name, similarity), best first."""
        if self.cache is None or not self._strings or not self.cache.embedder.available():
            return []
        query = self.cache.vectors([term])[0]
        # The catalogue's vectors are known; a large vocabulary of one's own is embedded a
        # batch at a time in the background, and matched once it is there.
        indices, vectors = self.cache.known(self._strings)
        sims = vectors @ query
        best: dict[str, float] = {}
        for k in np.flatnonzero(sims >= self.threshold):
            for name in self._owner_of[self._strings[indices[k]]]:
                best[name] = max(best.get(name, 0.0), float(sims[k]))
        if not best:
            return []
        top = max(best.values())
        ranked = sorted(((n, s) for n, s in best.items() if s >= top - self.margin), key=lambda x: -x[1])
        kept: list[tuple[str, float]] = []
        for name, s in ranked:
            if any(name in self._parents.get(k, ()) for k, _ in kept):
                continue  # a parent of a closer label: "doggy" is not any animal
            kept.append((name, s))
        return kept[: self.limit]

    def resolve(self, term: str) -> list[TermRef]:
        refs = self.direct(term)
        if refs:
            return refs
        out: list[TermRef] = []
        for name, _ in self.related(term):
            for spelling in self.spellings(name):
                out += self._label_refs(spelling, f"related to “{term}”")
        return list(dict.fromkeys(out))

    def nearest(self, term: str, limit: int = 5) -> list[str]:
        """Label names nearest to the term in meaning (for "nothing found, try ..."),
        whatever the threshold."""
        if self.cache is None or not self._strings or not self.cache.embedder.available():
            return []
        indices, vectors = self.cache.known(self._strings)
        sims = vectors @ self.cache.vectors([term])[0]
        out: list[str] = []
        for k in np.argsort(-sims):
            for name in self._owner_of[self._strings[indices[int(k)]]]:
                if name not in out:
                    out.append(name)
            if len(out) >= limit:
                break
        return out[:limit]
