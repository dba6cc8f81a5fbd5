"""Search: the gallery's page of images for a resolved query, ranked, with why each matched.

The words of a query are resolved to image terms before they get here
(:mod:`labelkit.search` turns "puppy" into the label ``Dog`` because ``Puppy`` is its alias,
"seaside" into ``Beach`` through the text model). This module only sees
:class:`TermRef` groups:

* ``include``: every group must be matched by the image (AND); within a group any one
  term will do (OR);
* ``exclude``: an image matching any term of any of these groups is left out (NOT).

Terms are looked up in ``image_terms``, which holds each image's *effective* terms (see
:mod:`labelkit.db.counts`): a label a person rejected is not there, not even as another
label's parent, so a rejection always outranks the model. Scoped by the viewer like every
gallery query (another user's photos never match), and combined with the gallery's
:class:`~labelkit.db.queries.images.ImageFilter` (its ``min_confidence`` applies to the
matched terms). Ranked by the best confidence among the matched terms, then newest first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from labelkit.db import counts
from labelkit.db.models import Image, ImageTerm, TermKind
from labelkit.db.queries._scope import _term_total, _totals_owner
from labelkit.db.queries.images import ImageFilter, _filtered_images
from labelkit.domain import Viewer


@dataclass(frozen=True, slots=True)
class TermRef:
    """One image term a query word stands for, and how to say why it matched.

    ``why`` is appended to the term in the result's explanation: ``"alias Puppy"`` gives
    "Dog, alias Puppy"; ``""`` gives just "Dog".
    """

    kind: TermKind
    term: str
    why: str = ""


Group = Sequence[TermRef]

#: How far below the n-th best confidence :func:`_best` sets its floor (see _nth_confidence).
FLOOR_SLACK = 0.01

#: A search counts its matches up to this many; past it the total says "at least" (the page
#: shows "10,000+"). Counting every match of an admin's ``dog | cat`` at 1,000,000 photos
#: (415,000) took 3.5 s; the first 10,001 take a few tens of milliseconds. One-name searches
#: ("dog") read their exact total from the running totals whatever its size.
COUNT_CAP = 10_000


@dataclass(frozen=True, slots=True)
class SearchHit:
    image: Image
    score: float  # the best confidence among the matched terms (0-100)
    why: list[str] = field(default_factory=list)  # e.g. ["Dog, alias Puppy", "Beach"]


@dataclass(frozen=True, slots=True)
class SearchPage:
    items: list[SearchHit]
    total: int
    page: int
    page_size: int
    capped: bool = False  # counting stopped at COUNT_CAP: there are more than ``total``

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def _matches(group: Group, min_confidence: float | None = None, t: Any = ImageTerm) -> Any:
    """A condition on ``ImageTerm`` (or its alias ``t``): the row is one of the group's terms."""
    by_kind: dict[TermKind, set[str]] = defaultdict(set)
    for ref in group:
        by_kind[ref.kind].add(ref.term[:128])
    cond = or_(*(and_(t.kind == kind, t.term.in_(sorted(terms))) for kind, terms in by_kind.items()))
    if min_confidence is not None:
        cond = and_(cond, t.confidence >= min_confidence)
    return cond


def _has(group: Group, min_confidence: float | None, owner: str | None, image_id: Any = Image.id) -> Any:
    """The image (``Image.id``, or the column ``image_id``) carries one of the group's terms.
    With the owner known the probe names it too, so the database can read the owner's rows
    of those terms from the (owner, kind, term) index instead of everyone's."""
    cond = [ImageTerm.image_id == image_id, _matches(group, min_confidence)]
    if owner is not None:
        cond.append(ImageTerm.owner_id == owner)
    return exists().where(*cond)


def search_images(
    *,
    session: Session,
    viewer: Viewer,
    include: Sequence[Group],
    exclude: Sequence[Group] = (),
    flt: ImageFilter | None = None,
    page: int = 1,
    page_size: int = 24,
) -> SearchPage:
    """A page of the viewer's images matching every ``include`` group and no ``exclude``
    group, best match first. An empty include group matches nothing (a word no term stands
    for); no include groups at all: every image passing the filter and the excludes, at
    score 0, newest first."""
    flt = flt or ImageFilter()
    page = max(1, page)
    if any(not g for g in include):
        return SearchPage(items=[], total=0, page=page, page_size=page_size)
    min_conf = flt.min_confidence
    owner = _search_owner(viewer, flt)
    refs = [ref for group in include for ref in group]
    base, score = _matching(viewer, include, exclude, flt, owner)
    # Exact from the running totals for one name; else counted, up to COUNT_CAP + 1.
    exact = _one_name_total(session, viewer, include, exclude, flt)
    total = exact if exact is not None else _terms_total(session, viewer, include, exclude, flt, owner)
    if total is None:
        total = _count(session, base.with_only_columns(Image.id))
    capped = exact is None and total > COUNT_CAP
    if total == 0:
        return SearchPage(items=[], total=0, page=page, page_size=page_size)
    offset = (page - 1) * page_size
    if score is not None:
        found = _best(session, viewer, include, exclude, flt, owner, offset, page_size)
    else:
        images = session.scalars(
            base.order_by(Image.created_at.desc(), Image.id.desc()).limit(page_size).offset(offset)
        ).all()
        found = [(img, 0.0) for img in images]
    why = _explain(session, [img.id for img, _ in found], refs, min_conf)
    items = [SearchHit(image=img, score=s, why=why.get(img.id, [])) for img, s in found]
    if capped:
        return SearchPage(items=items, total=COUNT_CAP, page=page, page_size=page_size, capped=True)
    return SearchPage(items=items, total=total, page=page, page_size=page_size)


def _count(session: Session, ids: Select[Any]) -> int:
    """How many rows ``ids`` has, counting no further than one past :data:`COUNT_CAP`."""
    return int(session.scalar(select(func.count()).select_from(ids.limit(COUNT_CAP + 1).subquery())) or 0)


def _matching(
    viewer: Viewer,
    include: Sequence[Group],
    exclude: Sequence[Group],
    flt: ImageFilter,
    owner: str | None,
    floor: float | None = None,
) -> tuple[Select[Any], Any]:
    """The viewer's images matching the query and passing ``flt``, and their score (None
    when there are no include terms). With a ``floor`` only images whose score is at least
    that are kept (their score is unchanged: it is their best matched term, which is kept)."""
    min_conf = flt.min_confidence
    base = _filtered_images(viewer, replace(flt, min_confidence=None) if include else flt)
    refs = [ref for group in include for ref in group]
    score: Any = None
    if refs:
        # The matches and their scores in one pass over the term index: the best confidence
        # per image among every include term (a derived table, joined to the images).
        # With one group it is the whole condition; further groups are EXISTS probes.
        # Scoped to one owner when the search is (a person's own photos, or an admin's owner
        # filter): the (owner_id, kind, term, confidence) index then holds exactly the
        # rows to read, however many other people's photos carry the term.
        terms = select(ImageTerm.image_id.label("image_id"), func.max(ImageTerm.confidence).label("score"))
        if owner is not None:
            terms = terms.where(ImageTerm.owner_id == owner)
        lowest = max((c for c in (min_conf, floor) if c is not None), default=None)
        matched = terms.where(_matches(refs, lowest)).group_by(ImageTerm.image_id).subquery("matched")
        base = base.join(matched, matched.c.image_id == Image.id)
        score = matched.c.score
    # With one group the derived table is the whole condition; with more, each is a probe
    # (the table holds images matching any of them).
    return base.where(*_probes(include if len(include) > 1 else (), exclude, min_conf, owner)), score


def _probes(
    include: Sequence[Group],
    exclude: Sequence[Group],
    min_confidence: float | None,
    owner: str | None,
    image_id: Any = Image.id,
) -> list[Any]:
    """EXISTS probes on the image (``image_id``): it carries a term of every ``include``
    group and of no ``exclude`` group."""
    return [_has(group, min_confidence, owner, image_id) for group in include] + [
        ~_has(group, None, owner, image_id) for group in exclude if group
    ]


def _best(
    session: Session,
    viewer: Viewer,
    include: Sequence[Group],
    exclude: Sequence[Group],
    flt: ImageFilter,
    owner: str | None,
    offset: int,
    limit: int,
) -> list[tuple[Image, float]]:
    """The page of the ranking (best score, then newest), read from the best-scored matches
    only.

    Ranking every match costs O(matches) (an admin's "dog" at 1,000,000 photos: 400,000
    rows grouped, joined and sorted). The page needs only the first ``offset + limit``
    images, and an image's score is one of its term rows' confidence, so: take the
    confidence ``floor`` of the n-th best matching term row (one read of the term index,
    no join), and rank only the images scoring at least ``floor``. Any image scoring less
    ranks below all of those, so when at least ``offset + limit`` images pass the floor
    (and the filters, excludes and other groups), their ranking's page is the whole
    ranking's page. When fewer pass (one image has several matching rows, or the filters
    drop some), the floor is taken deeper, four times as deep each time, down to no floor."""
    refs = [ref for group in include for ref in group]
    need = offset + limit
    depth = need
    while True:
        floor = _nth_confidence(session, refs, flt.min_confidence, owner, depth)
        base, score = _matching(viewer, include, exclude, flt, owner, floor)
        ranked = session.execute(
            base.with_only_columns(Image.id, score)
            .order_by(score.desc(), Image.created_at.desc(), Image.id.desc())
            .limit(need)
        ).all()
        if floor is None or len(ranked) >= need:
            break
        depth *= 4
    # Rank narrow rows (id, score, date: the sort does not carry whole image rows), then
    # load the page's images.
    ranked = ranked[offset:]
    ids = [r[0] for r in ranked]
    loaded = {img.id: img for img in session.scalars(select(Image).where(Image.id.in_(ids)))}
    return [(loaded[i], float(s or 0.0)) for i, s in ranked if i in loaded]


def _nth_confidence(
    session: Session, refs: Sequence[TermRef], min_conf: float | None, owner: str | None, n: int
) -> float | None:
    """Just below the confidence of the n-th most confident matching term row (the owner's,
    when the search has one), or None when there are fewer rows than that.

    Read per term: each term's n best rows are the first n of an index in confidence order
    (the owner's (owner, kind, term, confidence), everyone's (kind, term, confidence)), so
    this reads at most n rows per term however many photos carry it; the n-th best of all
    is among them.

    "Just below": MySQL's FLOAT is single precision and reads back rounded to six digits,
    which may be above the stored value (73.45679 reads 73.4568, and ``c >= 73.4568`` is
    false), leaving that row's images out and the page short, for one more round; a floor
    a hundredth lower keeps them. (Never a wrong page either way: images scoring above the
    n-th row number fewer than n.)"""
    best: list[float] = []
    for kind, term in sorted({(ref.kind, ref.term[:128]) for ref in refs}):
        stmt = select(ImageTerm.confidence).where(ImageTerm.kind == kind, ImageTerm.term == term)
        if owner is not None:
            stmt = stmt.where(ImageTerm.owner_id == owner)
        if min_conf is not None:
            stmt = stmt.where(ImageTerm.confidence >= min_conf)
        best += session.scalars(stmt.order_by(ImageTerm.confidence.desc()).limit(n))
    if len(best) < n:
        return None
    return float(sorted(best, reverse=True)[n - 1]) - FLOOR_SLACK


def _search_owner(viewer: Viewer, flt: ImageFilter) -> str | None:
    """The one owner whose photos a search can return, or None for an admin's search of
    everyone's. (A person's search is their own photos whatever the filter says: the scoped
    image query leaves out anyone else's.)"""
    if not viewer.is_admin:
        return viewer.user_id
    return flt.owner_id


def _foreign_owner(viewer: Viewer, flt: ImageFilter) -> bool:
    """A person's filter names someone else as the owner (the scoped query finds nothing)."""
    return not viewer.is_admin and flt.owner_id not in (None, viewer.user_id)


def ranked_page(
    *,
    session: Session,
    viewer: Viewer,
    ranked: Sequence[tuple[str, float]],
    why: str,
    flt: ImageFilter | None = None,
    page: int = 1,
    page_size: int = 24,
) -> SearchPage:
    """A page of images already ranked elsewhere (``(image id, score 0-100)``, best first:
    similar photos), kept to those the viewer may see and ``flt`` lets through, each
    explained by ``why``."""
    page = max(1, page)
    ids = [i for i, _ in ranked]
    allowed = {
        img.id: img
        for img in session.scalars(_filtered_images(viewer, flt or ImageFilter()).where(Image.id.in_(ids)))
    }
    kept = [(allowed[i], score) for i, score in ranked if i in allowed]
    offset = (page - 1) * page_size
    items = [SearchHit(image=img, score=score, why=[why]) for img, score in kept[offset : offset + page_size]]
    return SearchPage(items=items, total=len(kept), page=page, page_size=page_size)


def _one_name_total(
    session: Session, viewer: Viewer, include: Sequence[Group], exclude: Sequence[Group], flt: ImageFilter
) -> int | None:
    """The total of a one-name search ("dog", "puppy": the label Dog, as a label or a parent)
    from the running totals, as the gallery's label filter does (counting the matches is
    O(matches)); None when the search is anything more."""
    if len(include) != 1 or any(exclude) or replace(flt, owner_id=None) != ImageFilter():
        return None
    names = {ref.term[:128] for ref in include[0]}
    if len(names) != 1 or any(ref.kind not in (TermKind.LABEL, TermKind.PARENT) for ref in include[0]):
        return None
    if _foreign_owner(viewer, flt):
        return 0  # another user's images: the scoped query finds none
    owner = flt.owner_id if flt.owner_id is not None else _totals_owner(viewer)
    return _term_total(session, owner, counts.ANY, names.pop())


def _terms_total(
    session: Session,
    viewer: Viewer,
    include: Sequence[Group],
    exclude: Sequence[Group],
    flt: ImageFilter,
    owner: str | None,
) -> int | None:
    """The number of matches counted from ``image_terms`` alone, when the gallery's filter
    asks nothing of the images themselves (no status, dates, category or review): every
    term row's image exists (the foreign key cascades) and carries its owner, so the images
    need not be joined. One index range per term (the owner's, or everyone's) and, for AND
    and NOT groups, a primary-key probe per candidate. None when the filter needs the images
    (the caller counts through them)."""
    if not include or replace(flt, owner_id=None, min_confidence=None) != ImageFilter():
        return None
    if _foreign_owner(viewer, flt):
        return 0  # another user's images: the scoped query finds none
    t = aliased(ImageTerm)
    stmt = select(t.image_id).where(
        _matches(include[0], flt.min_confidence, t),
        *_probes(include[1:], exclude, flt.min_confidence, owner, t.image_id),
    )
    if owner is not None:
        stmt = stmt.where(t.owner_id == owner)
    return _count(session, stmt.distinct())


def _explain(
    session: Session, image_ids: list[str], refs: list[TermRef], min_conf: float | None
) -> dict[str, list[str]]:
    """Per image: its matched terms with their reasons, most confident first."""
    if not image_ids or not refs:
        return {}
    reasons: dict[tuple[TermKind, str], list[str]] = defaultdict(list)
    for ref in refs:
        key = (ref.kind, ref.term[:128])
        if ref.why not in reasons[key]:
            reasons[key].append(ref.why)
    stmt = (
        select(ImageTerm.image_id, ImageTerm.kind, ImageTerm.term, ImageTerm.confidence)
        .where(ImageTerm.image_id.in_(image_ids), _matches(refs, min_conf))
        .order_by(ImageTerm.image_id, ImageTerm.confidence.desc(), ImageTerm.term)
    )
    out: dict[str, list[str]] = defaultdict(list)
    for image_id, kind, term, _conf in session.execute(stmt):
        for why in reasons.get((TermKind(kind), term), []):
            text = f"{term}, {why}" if why else term
            if text not in out[image_id]:
                out[image_id].append(text)
    return dict(out)
