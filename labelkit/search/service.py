"""The search use case: text -> resolved terms -> the ranked page, and what to suggest
when nothing matched. The dashboard and the CLI call :meth:`Searcher.search`.

Besides labels, a typed word matches the words read in the photos (``image_terms`` of kind
``text``): ``soon`` finds the photo that says "GET WELL SOON". Every word is looked for in
the text too (the photos may say "dog" without showing one), and one the viewer's photos do
say is no longer "a word that stands for nothing"."""

from __future__ import annotations

import difflib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from sqlalchemy.orm import Session

from labelkit import similar
from labelkit.db.counts import text_tokens
from labelkit.db.models import TermKind
from labelkit.db.queries import images as image_q
from labelkit.db.queries import search as search_q
from labelkit.db.queries import stats as stats_q
from labelkit.db.queries import text as text_q
from labelkit.db.queries.images import ImageFilter, Neighbours
from labelkit.domain import Viewer
from labelkit.errors import NotFound
from labelkit.search.expand import EmbeddingCache, KnownLabel, Resolver, catalog_labels, word_forms
from labelkit.search.query import Query, parse
from labelkit.search.text_model import TextEmbedder
from labelkit.vocabulary import fold

#: How many similar photos ``similar:<id>`` shows at most.
SIMILAR_LIMIT = 96
#: An image id's length (uuid4 hex).
ID_LENGTH = 32

#: The viewer's own terms considered (most common first), beyond the catalogue.
OWN_TERMS = 5000
#: How a match on the words read in a photo is explained ("soon, read in the photo").
READ_IN_PHOTO = "read in the photo"


@dataclass(frozen=True, slots=True)
class SearchResult:
    query: Query
    page: search_q.SearchPage
    unmatched: list[str] = field(default_factory=list)  # terms that stand for no label
    suggestions: list[str] = field(default_factory=list)  # nearest labels, when nothing matched
    notice: str | None = None  # why nothing could be searched (e.g. "similar:" with a bad id)
    less_similar: int = 0  # similar:<id>: photos below the cutoff, left out (``more=True`` shows them)


class Searcher:
    """One per process (:func:`get_searcher`): the text model and the vocabulary's
    embeddings are loaded once and shared by every search."""

    def __init__(self, model_dir: Path, labels: Sequence[KnownLabel] | None = None) -> None:
        self.embedder = TextEmbedder(model_dir)
        self.cache = EmbeddingCache(self.embedder, model_dir)
        self._labels = labels
        self._lock = threading.Lock()
        self._resolvers: dict[tuple[frozenset[str], frozenset[str]], Resolver] = {}

    @property
    def labels(self) -> Sequence[KnownLabel]:
        if self._labels is None:
            self._labels = catalog_labels()
        return self._labels

    def resolver(self, own_terms: Sequence[str] = (), own_categories: Sequence[str] = ()) -> Resolver:
        """The catalogue plus the viewer's own label names and categories (kept for a few
        vocabularies)."""
        key = (frozenset(own_terms), frozenset(own_categories))
        with self._lock:
            found = self._resolvers.get(key)
            if found is None:
                # Every spelling the viewer's images carry is kept, also one that folds like a
                # catalogue name ("beach" beside "Beach"): the resolver searches all of them.
                known = {lab.name for lab in self.labels}
                extra = [KnownLabel(t) for t in sorted(key[0]) if t not in known]
                if key[1]:
                    extra.append(KnownLabel("", categories=tuple(sorted(key[1]))))
                found = Resolver([*self.labels, *extra], self.cache)
                if len(self._resolvers) > 32:
                    self._resolvers.clear()
                self._resolvers[key] = found
            return found

    def resolve(
        self, query: Query, own_terms: Sequence[str] = (), own_categories: Sequence[str] = ()
    ) -> tuple[list[list[search_q.TermRef]], list[list[search_q.TermRef]], list[str]]:
        """(include groups, exclude groups, terms that stand for nothing)."""
        resolver = self.resolver(own_terms, own_categories)
        unmatched: list[str] = []

        def group(terms: tuple[str, ...]) -> list[search_q.TermRef]:
            refs: list[search_q.TermRef] = []
            for term in terms:
                found = resolver.resolve(term)
                if not found:
                    unmatched.append(term)
                refs += [r for r in found if r not in refs]
            return refs

        include = [group(g) for g in query.include]
        exclude = [group(g) for g in query.exclude]
        return include, exclude, unmatched

    def search(
        self,
        *,
        session: Session,
        viewer: Viewer,
        text: str | Query,
        flt: ImageFilter | None = None,
        page: int = 1,
        page_size: int = 24,
        more: bool = False,
    ) -> SearchResult:
        """The page of ``text``'s matches. ``more``: ``similar:<id>`` also lists the photos
        below the similarity cutoff (:data:`labelkit.similar.SIMILAR_CUTOFF`)."""
        own, categories = own_terms(session=session, viewer=viewer)
        query = parse(text) if isinstance(text, str) else text
        if isinstance(text, str) and _plain_words(text):
            # Words typed with no syntax that together are a label ("golden retriever", a
            # link's ?label=Red Thing) are that label, not each word on its own.
            phrase = fold(text)
            if " " in phrase and self.resolver(own, categories).direct(phrase):
                query = Query(include=((phrase,),))
        if query.similar_to:
            return self._similar(session, viewer, query, flt, page, page_size, more)
        include, exclude, unmatched = self.resolve(query, own, categories)
        include, exclude, unmatched = _with_text(session, viewer, flt, query, include, exclude, unmatched)
        result = search_q.search_images(
            session=session,
            viewer=viewer,
            include=include,
            exclude=exclude,
            flt=flt,
            page=page,
            page_size=page_size,
        )
        suggestions: list[str] = []
        if result.total == 0 and query.include:
            suggestions = self.nearest(" ".join(t for g in query.include for t in g), own)
        return SearchResult(query=query, page=result, unmatched=unmatched, suggestions=suggestions)

    def _similar(
        self,
        session: Session,
        viewer: Viewer,
        query: Query,
        flt: ImageFilter | None,
        page: int,
        page_size: int,
        more: bool,
    ) -> SearchResult:
        """``similar:<id>``: the photos most like that one, most similar first, down to the
        cutoff (``more``: below it too), each saying how similar (other words of the query
        are not applied; the gallery's filters are)."""
        image_id = str(query.similar_to)
        empty = search_q.SearchPage(items=[], total=0, page=page, page_size=page_size)
        try:
            ranked = similar.similar_images(
                session=session, viewer=viewer, image_id=image_id, limit=SIMILAR_LIMIT
            )
            name = image_q.get_image(session=session, viewer=viewer, image_id=image_id).original_name
        except NotFound:
            return SearchResult(query=query, page=empty, notice=_bad_image_id(image_id))
        close = [(i, s) for i, s in ranked if s >= similar.SIMILAR_CUTOFF]
        shown = ranked if more else close
        found = search_q.ranked_page(
            session=session,
            viewer=viewer,
            ranked=[(i, round(100 * max(0.0, s), 1)) for i, s in shown],
            why=f"looks like {name}",
            flt=flt,
            page=page,
            page_size=page_size,
        )
        items = [
            replace(hit, why=[f"looks like {name}: similarity {hit.score / 100:.2f}"]) for hit in found.items
        ]
        return SearchResult(
            query=query,
            page=replace(found, items=items),
            less_similar=0 if more else len(ranked) - len(close),
        )

    def neighbours(
        self,
        *,
        session: Session,
        viewer: Viewer,
        text: str,
        flt: ImageFilter | None,
        image_id: str,
        page: int,
        page_size: int = 24,
    ) -> Neighbours | None:
        """The images before and after ``image_id`` in the search's ranked order (what the
        gallery shows for ``text``), looked for on the gallery ``page`` the viewer came from
        and the pages beside it; None when the image is on none of them (it no longer
        matches, or the ranking moved it far)."""

        def ids(p: int) -> tuple[list[str], int]:
            found = self.search(
                session=session, viewer=viewer, text=text, flt=flt, page=p, page_size=page_size
            )
            return [hit.image.id for hit in found.page.items], found.page.pages

        for p in dict.fromkeys(q for q in (page, page - 1, page + 1) if q >= 1):
            here, pages = ids(p)
            if image_id not in here:
                continue
            at = here.index(image_id)
            newer: str | None = None
            older: str | None = None
            if at > 0:
                newer = here[at - 1]
            elif p > 1:
                before = ids(p - 1)[0]
                newer = before[-1] if before else None
            if at + 1 < len(here):
                older = here[at + 1]
            elif p < pages:
                after = ids(p + 1)[0]
                older = after[0] if after else None
            return Neighbours(newer=newer, older=older, position=(p - 1) * page_size + at)
        return None

    def nearest(self, text: str, candidates: Sequence[str], limit: int = 5) -> list[str]:
        """The viewer's labels nearest to ``text`` in meaning (spelling if no model)."""
        names = sorted(set(candidates))
        if not names:
            return []
        if self.embedder.available():
            indices, vectors = self.cache.known(names)
            sims = vectors @ self.cache.vectors([fold(text)])[0]
            order = sims.argsort()[::-1][:limit]
            return [names[indices[int(i)]] for i in order]
        folded = {fold(n): n for n in names}
        return [folded[f] for f in difflib.get_close_matches(fold(text), list(folded), n=limit, cutoff=0.0)]


def text_words(term: str) -> list[str]:
    """The words read in photos a typed term matches: the term (stripped of punctuation
    around it) and its singular, if it is one word of at least two characters."""
    tokens = text_tokens(term)
    if not tokens or " " in term.strip():
        return []
    return [t for t in word_forms(tokens[0]) if len(t) >= 2]


def _with_text(
    session: Session,
    viewer: Viewer,
    flt: ImageFilter | None,
    query: Query,
    include: list[list[search_q.TermRef]],
    exclude: list[list[search_q.TermRef]],
    unmatched: list[str],
) -> tuple[list[list[search_q.TermRef]], list[list[search_q.TermRef]], list[str]]:
    """The resolved groups with, for each term, the words read in photos it matches (those the
    photos searched do say: one index probe per word); a term found there is not unmatched."""
    wanted = {term: text_words(term) for term in query.terms()}
    owner = flt.owner_id if flt is not None and viewer.is_admin else None
    present = text_q.text_terms_present(
        session=session, viewer=viewer, terms=[w for words in wanted.values() for w in words], owner_id=owner
    )
    said: set[str] = set()

    def add(terms: tuple[str, ...], refs: list[search_q.TermRef]) -> list[search_q.TermRef]:
        out = list(refs)
        for term in terms:
            for word in wanted.get(term, []):
                if word in present:
                    said.add(term)
                    ref = search_q.TermRef(TermKind.TEXT, word, READ_IN_PHOTO)
                    if ref not in out:
                        out.append(ref)
        return out

    include = [add(g, refs) for g, refs in zip(query.include, include, strict=True)]
    exclude = [add(g, refs) for g, refs in zip(query.exclude, exclude, strict=True)]
    return include, exclude, [t for t in unmatched if t not in said]


def _bad_image_id(image_id: str) -> str:
    """What to say when ``similar:<id>`` names no photo the viewer may see."""
    if len(image_id) != ID_LENGTH or any(c not in "0123456789abcdef" for c in image_id.lower()):
        return (
            f"“similar:{image_id}” needs a whole image id ({ID_LENGTH} letters and digits): "
            "copy it from the image page (“Find similar photos”)."
        )
    return f"No photo of yours has the id {image_id}: it may have been deleted."


def _plain_words(text: str) -> bool:
    return not any(c in text for c in '"|') and not any(w.startswith("-") or ":" in w for w in text.split())


def own_terms(*, session: Session, viewer: Viewer) -> tuple[list[str], list[str]]:
    """(label names and parents, categories) the viewer's images carry (running totals)."""
    names = [t.term for t in stats_q.term_suggestions(session=session, viewer=viewer, limit=OWN_TERMS)]
    categories = stats_q.term_counts(session=session, viewer=viewer, kind=TermKind.CATEGORY, limit=OWN_TERMS)
    return names, [t for t, _ in categories]


@lru_cache(maxsize=4)
def get_searcher(model_dir: Path) -> Searcher:
    return Searcher(Path(model_dir))
