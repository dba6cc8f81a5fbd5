"""Running totals behind the dashboard's counts and charts.

Counting label rows on every page view is O(rows): seconds at a million images. So
the totals are kept in three small tables (``label_counts``, ``term_counts``,
``confidence_bins``, see :mod:`labelkit.db.models`), one set per owner plus one for
everyone (owner ``*``, what admins read), and every write to ``labels`` or
``image_terms`` updates them in the same transaction.

How a write keeps them exact, whatever it does and however often it is repeated:

1. :func:`counting` locks the images being changed (row locks on MySQL/MariaDB, the
   database's write lock on SQLite), so two writers of one image take turns;
2. reads what those images contribute to the totals (a *snapshot*: their label rows
   and terms; MySQL runs at READ COMMITTED (see :mod:`labelkit.db.engine`), so once the
   image is locked these are its latest rows, not an older read view);
3. lets the write happen, derives the images' ``image_terms`` again from their label
   rows (:func:`derive_terms`), snapshots again and adds the difference (after - before)
   to the owner's rows and to ``*``'s, in key order (no lock-order deadlocks).

What an image carries (one definition everywhere) is its *effective* labels
(:func:`effective_terms`): the model's image-level labels minus every name a person
rejected, plus the labels people confirmed or added (at confidence 100). ``image_terms``
holds exactly those names, their parents and their categories, and a rejected name is
never among them (not even as another label's parent). So the gallery's filter and
search, the cards' top label, the Labels page, the charts and the exports agree, and a
person's rejection outranks the model in all of them. A rejection also ends the model labels
that were only evidence for the rejected name (its roll-up parents: "Feline" with "Cat"),
unless a label that still stands names them as parents (a dog photo keeps Pet and Mammal from
"Dog"): :func:`implied_rejections` says which, and :func:`counting` stores them as human
rejections marked ``implied_by`` (so the review queue, the totals and a rebuild see them as
any rejection). The totals:

* ``label_counts.images``: images carrying the name as an effective label or as a parent
  (the gallery's label filter; equal to ``term_counts`` of kind ``any``);
* ``model_rows`` / ``confidence_milli`` and ``confidence_bins``: image-level model rows
  whose name no person rejected (the mean confidence and the confidence histogram);
* ``confirmed`` / ``rejected``: people's verdicts; ``awaiting``: model labels nobody reviewed.

The words read in a photo are terms too (kind ``text``, lower-cased, from ``image_text``:
:func:`derive_text_terms`, called by whatever writes the text): a label write leaves them
alone, and no total counts them (a page of print would add hundreds of rows per photo to
``term_counts``, and every worker would queue on the everyone-row of "the").

A re-delivered job writes nothing new, so its difference is zero: the totals stay
idempotent like the rows. :func:`rebuild` recomputes everything from the rows in
bulk SQL; the tests check that a random mix of writes leaves the running totals
equal to a rebuild, and ``python -m labelkit.db.counts`` repairs a database by
rebuilding (e.g. after rows were loaded behind the queries' back; ``--terms`` derives
every image's terms again first, as migration 0008 does).
"""

from __future__ import annotations

import argparse
import re
import sys
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Integer,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    inspect,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from labelkit.db.models import (
    ALL_OWNERS,
    MACHINE_SOURCES,
    ConfidenceBin,
    Image,
    ImageTerm,
    ImageTextRow,
    LabelCount,
    LabelRow,
    LabelSource,
    LabelThreshold,
    ReviewState,
    TermCount,
    TermKind,
    utcnow,
)

ANY = "any"  # term_counts.kind for "a label name or a parent"
MODEL_VERSION = "model_version"  # term_counts.kind: images labelled by a model version (term)
LABEL_COLUMNS = ("images", "model_rows", "confidence_milli", "confirmed", "rejected", "awaiting")
_CHUNK = 500

Key = tuple[Any, ...]  # ("label", owner, name, column) | ("term", owner, kind, term) | ("bin", owner, bin)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _floor(expr: Any, dialect: str) -> ColumnElement[Any]:
    # SQLite has no FLOOR without its math extension; CAST truncates, the same for x >= 0.
    # (MySQL's CAST rounds, so it gets FLOOR.)
    return cast(expr, Integer) if dialect == "sqlite" else func.floor(expr)


def _milli(dialect: str) -> ColumnElement[Any]:
    """floor(confidence * 1000): integer sums, so adding and subtracting never drifts."""
    return _floor(LabelRow.confidence * 1000, dialect)


def _bin(dialect: str) -> ColumnElement[Any]:
    """The whole confidence point 0..99 (100 counts as 99, like the histogram's last bin)."""
    return case((LabelRow.confidence >= 99, 99), else_=_floor(LabelRow.confidence, dialect))


def awaiting_review() -> list[Any]:
    """Conditions on ``LabelRow``: an image-level model label no person has reviewed (no
    human row of the same name on the image). The review queue and its totals use it."""
    human = aliased(LabelRow)
    reviewed = (
        select(human.id)
        .where(
            human.image_id == LabelRow.image_id,
            human.source == LabelSource.HUMAN,
            # Always true for human rows; with it the lookup is one probe of the unique key
            # (image, source, model version, name) ...
            human.model_version == "",
            human.name == LabelRow.name,
        )
        # ... which MySQL, left alone, passes over for (source, confidence): a scan of
        # every human row per label (seconds at a million images).
        .with_hint(human, "FORCE INDEX (uq_labels_key)", dialect_name="mysql")
        .exists()
    )
    return [LabelRow.source.in_(MACHINE_SOURCES), LabelRow.instance == 0, ~reviewed]


# --------------------------------------------------------------------------- effective labels

TermKey = tuple[TermKind, str]


def effective_terms(
    rows: Iterable[Sequence[Any]], floors: Mapping[str, float] | None = None
) -> dict[TermKey, float]:
    """The terms one image carries, with the best confidence behind each.

    ``rows`` are the image's image-level label rows as ``(source, review, name, confidence,
    parents, categories)``. A name a person rejected is carried by nothing: not the model's
    label of that name (nor the parents and categories only it brought), not another label
    naming it as a parent. Names people confirmed or added are carried at 100 with the
    parents and categories stored on their row (copied from the model's row when there was
    one). Human rows with no verdict (``unreviewed``) change nothing. ``floors`` (case-folded
    name -> minimum confidence, :class:`~labelkit.db.models.LabelThreshold`): a machine label
    below its name's floor is carried by nothing, as if the labeller had not given it.
    """
    rows = list(rows)
    floors = floors or {}
    rejected = {r[2][:128] for r in rows if r[0] == LabelSource.HUMAN and r[1] == ReviewState.REJECTED}
    best: dict[TermKey, float] = {}

    def carry(kind: TermKind, term: str, confidence: float) -> None:
        key = (kind, term[:128])
        if term and (kind is TermKind.CATEGORY or key[1] not in rejected):
            best[key] = max(confidence, best.get(key, 0.0))

    for source, review, name, confidence, parents, categories in rows:
        if source in MACHINE_SOURCES:
            conf = float(confidence)
            if conf < floors.get(str(name).casefold(), 0.0):
                continue
        elif review == ReviewState.CONFIRMED:
            conf = 100.0
        else:
            continue
        if name[:128] in rejected:
            continue
        carry(TermKind.LABEL, name, conf)
        for parent in parents or []:
            carry(TermKind.PARENT, parent, conf)
        for category in categories or []:
            carry(TermKind.CATEGORY, category, conf)
    return best


def implied_rejections(rows: Iterable[Sequence[Any]]) -> dict[str, str]:
    """The model labels a person's rejections end with them: ``{name: rejected name}``.

    ``rows`` are one image's image-level label rows as ``(source, review, name, parents,
    implied_by)``. When a person rejects a name, the model labels that were only evidence
    for it go too: its roll-up parents ("Feline" rolled up from a rejected "Cat"). A parent
    stays when a label that still stands names it as a parent (a dog photo keeps Pet and
    Mammal from "Dog" when "Cat" is rejected), and any name a person gave a verdict of their
    own keeps that verdict. Only names with a model row are returned (nothing else to end).
    Rows already implied (``implied_by`` set) are this function's own output, not evidence.
    """
    rows = [r for r in rows if not (r[0] == LabelSource.HUMAN and r[4])]
    rejected = {
        str(r[2]).casefold(): str(r[2])
        for r in rows
        if r[0] == LabelSource.HUMAN and r[1] == ReviewState.REJECTED
    }
    if not rejected:
        return {}
    own_verdict = {str(r[2]).casefold() for r in rows if r[0] == LabelSource.HUMAN}
    model_names = {str(r[2]).casefold(): str(r[2]) for r in rows if r[0] in MACHINE_SOURCES}
    because: dict[str, str] = {}  # folded candidate -> the rejected name it rolled up from
    for _, _, name, parents, _ in sorted(rows, key=lambda r: str(r[2])):
        if str(name).casefold() in rejected:
            for parent in parents or []:
                because.setdefault(str(parent).casefold(), str(rejected[str(name).casefold()]))
    candidates = {c for c in because if c in model_names and c not in own_verdict}
    standing = [
        r
        for r in rows
        if str(r[2]).casefold() not in rejected
        and str(r[2]).casefold() not in candidates
        and (r[0] in MACHINE_SOURCES or r[1] == ReviewState.CONFIRMED)
    ]
    kept: set[str] = set()
    support = [list(r[3] or []) for r in standing]
    while support:  # a kept parent keeps its own parents in turn
        named = {str(p).casefold() for parents in support for p in parents} & (candidates - kept)
        kept |= named
        support = [
            list(r[3] or []) for r in rows if r[0] in MACHINE_SOURCES and str(r[2]).casefold() in named
        ]
    return {model_names[c]: because[c] for c in sorted(candidates - kept)}


def _not_rejected() -> ColumnElement[bool]:
    """Condition on ``LabelRow``: no person rejected this row's name on its image."""
    human = aliased(LabelRow)
    rejected = (
        select(human.id)
        .where(
            human.image_id == LabelRow.image_id,
            human.source == LabelSource.HUMAN,
            human.model_version == "",
            human.name == LabelRow.name,
            human.instance == 0,
            human.review == ReviewState.REJECTED,
        )
        .with_hint(human, "FORCE INDEX (uq_labels_key)", dialect_name="mysql")
        .exists()
    )
    return ~rejected


def not_rejected() -> list[Any]:
    """Conditions on ``LabelRow``: an image-level model label whose name no person rejected
    (what the mean confidence and the confidence histogram count)."""
    return [LabelRow.source.in_(MACHINE_SOURCES), LabelRow.instance == 0, _not_rejected()]


Rows = dict[str, list[Any]]  # image id -> its rows, as read by _read_labels / _read_terms


def _read_labels(session: Session, ids: Sequence[str], *, implied: bool = True) -> Rows:
    """The images' label rows: (image_id, source, model_version, name, instance, review,
    floor(confidence * 1000), confidence bin, confidence, parents, categories, implied_by,
    created_by, aliases). ``implied=False``: for the schema before migration 0013, which has
    no ``implied_by`` (read as None)."""
    dialect = _dialect(session)
    implied_by: Any = LabelRow.implied_by if implied else literal(None)
    out: Rows = defaultdict(list)
    # Core on the session's connection: these run on every write, and the ORM's execute
    # path costs more than the statements here.
    conn = session.connection()
    for start in range(0, len(ids), _CHUNK):
        stmt = select(
            LabelRow.image_id,
            LabelRow.source,
            LabelRow.model_version,
            LabelRow.name,
            LabelRow.instance,
            LabelRow.review,
            _milli(dialect),
            _bin(dialect),
            LabelRow.confidence,
            LabelRow.parents,
            LabelRow.categories,
            implied_by,
            LabelRow.created_by,
            LabelRow.aliases,
        ).where(LabelRow.image_id.in_(ids[start : start + _CHUNK]))
        for row in conn.execute(stmt):
            out[row[0]].append(row)
    return out


def _read_terms(session: Session, ids: Sequence[str]) -> Rows:
    """The images' ``image_terms`` rows: (image_id, kind, term, confidence)."""
    out: Rows = defaultdict(list)
    conn = session.connection()
    for start in range(0, len(ids), _CHUNK):
        stmt = select(ImageTerm.image_id, ImageTerm.kind, ImageTerm.term, ImageTerm.confidence).where(
            ImageTerm.image_id.in_(ids[start : start + _CHUNK])
        )
        for row in conn.execute(stmt):
            out[row[0]].append(row)
    return out


def derive_terms(
    session: Session,
    image_ids: Iterable[str],
    *,
    with_owner: bool = True,
    implied: bool = True,
) -> None:
    """Make these images' ``image_terms`` rows their :func:`effective_terms`, writing only
    the difference (a re-delivered job writes nothing). ``with_owner=False``: for the schema
    before migration 0011, whose rows have no ``owner_id``; ``implied=False``: before 0013,
    whose labels have no ``implied_by`` (migration 0008 runs this with both)."""
    ids = sorted(set(image_ids))
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        owners: dict[str, str] | None = None
        if with_owner:
            found = session.execute(select(Image.id, Image.owner_id).where(Image.id.in_(chunk)))
            owners = {str(i): str(o) for i, o in found}
        labels = _read_labels(session, chunk, implied=implied)
        floors = read_floors(session, set(owners.values())) if owners is not None else None
        _derive(session, chunk, labels, _read_terms(session, chunk), owners, floors)


#: Engines whose database has ``label_thresholds`` (migration 0015), found once each.
_HAS_FLOORS: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def _has_floors(session: Session) -> bool:
    """Whether the database has ``label_thresholds`` yet: code a migration ahead of the schema
    (a rolling deploy, the migration tests) derives terms without floors rather than failing."""
    engine = session.get_bind()
    if not isinstance(engine, Engine):
        engine = engine.engine
    if _HAS_FLOORS.get(engine):
        return True
    found = inspect(session.connection()).has_table(LabelThreshold.__tablename__)
    if found:
        _HAS_FLOORS[engine] = True
    return found


def schema_changed(bind: Engine | Connection) -> None:
    """Forget what :func:`_has_floors` found for this database (a migration dropped the table)."""
    _HAS_FLOORS.pop(bind if isinstance(bind, Engine) else bind.engine, None)


def read_floors(session: Session, owners: Iterable[str]) -> dict[str, dict[str, float]]:
    """Per owner, their label floors (case-folded name -> minimum confidence): everyone's
    (owner ``*``) with their own on top."""
    owners = sorted(set(owners))
    if not _has_floors(session):
        return {o: {} for o in owners}
    rows = session.execute(
        select(LabelThreshold.owner_id, LabelThreshold.name, LabelThreshold.min_confidence).where(
            LabelThreshold.owner_id.in_([ALL_OWNERS, *owners])
        )
    ).all()
    everyone = {str(n).casefold(): float(c) for o, n, c in rows if o == ALL_OWNERS}
    out = {o: dict(everyone) for o in owners}
    for o, n, c in rows:
        if o != ALL_OWNERS:
            out[o][str(n).casefold()] = float(c)
    return out


def _derive(
    session: Session,
    ids: Sequence[str],
    labels: Rows,
    terms: Rows,
    owners: dict[str, str] | None,
    floors: dict[str, dict[str, float]] | None = None,
) -> bool:
    """:func:`derive_terms` from rows already read; returns whether it wrote anything. New
    rows carry their image's owner from ``owners`` (None: rows without the column);
    ``floors`` are :func:`read_floors` of those owners (None: no thresholds)."""
    conn = session.connection()
    table: Any = ImageTerm.__table__
    gone: dict[tuple[str, TermKind], list[str]] = defaultdict(list)
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for image_id in ids:
        want = effective_terms(
            ((r[1], r[5], r[3], r[8], r[9], r[10]) for r in labels.get(image_id, []) if r[4] == 0),
            floors.get(owners[image_id]) if floors is not None and owners is not None else None,
        )
        old = {
            (TermKind(kind), term): float(conf)
            for _, kind, term, conf in terms.get(image_id, [])
            if kind != TermKind.TEXT  # derive_text_terms' own
        }
        for kind, term in old.keys() - want.keys():
            gone[image_id, kind].append(term)
        for (kind, term), conf in want.items():
            if (kind, term) not in old:
                row = {"image_id": image_id, "kind": kind, "term": term, "confidence": conf}
                if owners is not None:
                    row["owner_id"] = owners[image_id]
                new.append(row)
            elif abs(old[kind, term] - conf) > 1e-4:
                changed.append({"b_image": image_id, "b_kind": kind, "b_term": term, "b_conf": conf})
    # Deletes first: on MySQL's case-insensitive collation "cat" and "Cat" share a key.
    for (image_id, kind), gone_terms in sorted(gone.items()):
        conn.execute(
            delete(ImageTerm).where(
                ImageTerm.image_id == image_id, ImageTerm.kind == kind, ImageTerm.term.in_(sorted(gone_terms))
            )
        )
    if changed:
        conn.execute(
            update(table)
            .where(
                table.c.image_id == bindparam("b_image"),
                table.c.kind == bindparam("b_kind"),
                table.c.term == bindparam("b_term"),
            )
            .values(confidence=bindparam("b_conf")),
            changed,
        )
    if new:
        _insert_ignore_terms(session, new)
    return bool(gone or changed or new)


# --------------------------------------------------------------------------- words read in photos

#: Runs of letters and digits (any script); a word's pieces are searchable on their own.
_WORD = re.compile(r"\w+")
#: Punctuation around a word ("(coins)", "soon!"), stripped before it is kept whole.
_EDGES = "\"'()[]{}<>.,;:!?*“”‘’«»"
MIN_WORD = 2


def text_tokens(text: str) -> list[str]:
    """The search terms a word (or a typed term) stands for: lower-cased, stripped of the
    punctuation around it, and each run of letters and digits in it ("Region-based" ->
    region-based, region, based); shorter than two characters: none."""
    folded = text.casefold()
    out: dict[str, None] = {}
    for piece in folded.split():
        whole = piece.strip(_EDGES)
        if len(whole) >= MIN_WORD:
            out.setdefault(whole[:128], None)
        for run in _WORD.findall(piece):
            if len(run) >= MIN_WORD and run != "_" * len(run):
                out.setdefault(run[:128], None)
    return list(out)


def derive_text_terms(session: Session, image_ids: Iterable[str]) -> None:
    """Make these images' ``text`` terms the words of their ``image_text`` rows (the best
    confidence per term), writing only the difference. Their other terms are left alone."""
    ids = sorted(set(image_ids))
    conn = session.connection()
    table: Any = ImageTerm.__table__
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        owners = {
            str(i): str(o)
            for i, o in conn.execute(select(Image.id, Image.owner_id).where(Image.id.in_(chunk)))
        }
        want: dict[str, dict[str, float]] = defaultdict(dict)
        words = select(ImageTextRow.image_id, ImageTextRow.text, ImageTextRow.confidence).where(
            ImageTextRow.image_id.in_(chunk), ImageTextRow.kind == "WORD"
        )
        for image_id, text, confidence in conn.execute(words):
            for token in text_tokens(str(text)):
                terms = want[str(image_id)]
                terms[token] = max(float(confidence), terms.get(token, 0.0))
        have: dict[str, dict[str, float]] = defaultdict(dict)
        stored = select(ImageTerm.image_id, ImageTerm.term, ImageTerm.confidence).where(
            ImageTerm.image_id.in_(chunk), ImageTerm.kind == TermKind.TEXT
        )
        for image_id, term, confidence in conn.execute(stored):
            have[str(image_id)][str(term)] = float(confidence)
        new: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for image_id in chunk:
            wanted, old = want.get(image_id, {}), have.get(image_id, {})
            # MySQL compares terms without case or accents: "resume" is "résumé"'s key there.
            gone = sorted(set(old) - set(wanted))
            if gone:
                conn.execute(
                    delete(ImageTerm).where(
                        ImageTerm.image_id == image_id,
                        ImageTerm.kind == TermKind.TEXT,
                        ImageTerm.term.in_(gone),
                    )
                )
            for term, conf in sorted(wanted.items()):
                if term not in old:
                    if image_id in owners:
                        new.append(
                            {
                                "image_id": image_id,
                                "kind": TermKind.TEXT,
                                "term": term,
                                "confidence": conf,
                                "owner_id": owners[image_id],
                            }
                        )
                elif abs(old[term] - conf) > 1e-4:
                    changed.append({"b_image": image_id, "b_term": term, "b_conf": conf})
        if changed:
            conn.execute(
                update(table)
                .where(
                    table.c.image_id == bindparam("b_image"),
                    table.c.kind == TermKind.TEXT,
                    table.c.term == bindparam("b_term"),
                )
                .values(confidence=bindparam("b_conf")),
                changed,
            )
        if new:
            _insert_ignore_terms(session, new)


def derive_all_text_terms(session: Session, *, chunk: int = _CHUNK) -> int:
    """:func:`derive_text_terms` for every image with text (``python -m labelkit.db.counts
    --terms``); returns the images visited."""
    done, after = 0, ""
    while True:
        ids = list(
            session.scalars(
                select(ImageTextRow.image_id)
                .where(ImageTextRow.image_id > after)
                .group_by(ImageTextRow.image_id)
                .order_by(ImageTextRow.image_id)
                .limit(chunk)
            )
        )
        if not ids:
            return done
        derive_text_terms(session, ids)
        done += len(ids)
        after = ids[-1]


def _insert_ignore_terms(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert term rows, skipping any whose key exists (MySQL folds case in keys)."""
    dialect = _dialect(session)
    table: Any = ImageTerm.__table__
    if dialect in ("mysql", "mariadb"):
        stmt: Any = mysql_dialect.insert(table).on_duplicate_key_update({"image_id": table.c.image_id})
    elif dialect == "sqlite":
        stmt = sqlite_dialect.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - other backends are not supported
        raise NotImplementedError(dialect)
    session.connection().execute(stmt, rows)


def derive_all_terms(
    session: Session, *, chunk: int = _CHUNK, with_owner: bool = True, implied: bool = True
) -> int:
    """:func:`derive_terms` for every image, ``chunk`` images at a time (migration 0008,
    ``python -m labelkit.db.counts --terms``); returns the images visited."""
    done, after = 0, ""
    while True:
        ids = list(session.scalars(select(Image.id).where(Image.id > after).order_by(Image.id).limit(chunk)))
        if not ids:
            return done
        derive_terms(session, ids, with_owner=with_owner, implied=implied)
        done += len(ids)
        after = ids[-1]


def _imply(session: Session, ids: Sequence[str], labels: Rows) -> bool:
    """Make these images' implied rejections (human rows with ``implied_by`` set) what
    :func:`implied_rejections` says, writing only the difference; returns whether it wrote.
    An implied row is the rejecting person's, at the time it was implied."""
    conn = session.connection()
    table: Any = LabelRow.__table__
    wrote = False
    now = utcnow()
    for image_id in ids:
        rows = [r for r in labels.get(image_id, []) if r[4] == 0]
        want = implied_rejections((r[1], r[5], r[3], r[9], r[11]) for r in rows)
        have = {str(r[3]): r for r in rows if r[1] == LabelSource.HUMAN and r[11]}
        gone = sorted(set(have) - set(want))
        if gone:
            conn.execute(
                delete(LabelRow).where(
                    LabelRow.image_id == image_id,
                    LabelRow.source == LabelSource.HUMAN,
                    LabelRow.implied_by.is_not(None),
                    LabelRow.name.in_(gone),
                )
            )
        for name, by in sorted(want.items()):
            if name in have:
                if have[name][11] != by:
                    conn.execute(
                        update(LabelRow)
                        .where(
                            LabelRow.image_id == image_id,
                            LabelRow.source == LabelSource.HUMAN,
                            LabelRow.name == name,
                            LabelRow.instance == 0,
                        )
                        .values(implied_by=by)
                    )
                    wrote = True
                continue
            model = max((r for r in rows if r[1] in MACHINE_SOURCES and r[3] == name), key=lambda r: r[8])
            rejecter = next(
                (r[12] for r in rows if r[1] == LabelSource.HUMAN and r[3] == by and not r[11]), None
            )
            conn.execute(
                insert(table).values(
                    image_id=image_id,
                    source=LabelSource.HUMAN,
                    model_version="",
                    name=name,
                    instance=0,
                    confidence=100.0,
                    parents=list(model[9] or []),
                    aliases=list(model[13] or []),
                    categories=list(model[10] or []),
                    review=ReviewState.REJECTED,
                    implied_by=by,
                    created_by=rejecter,
                    created_at=now,
                )
            )
            wrote = True
        wrote = wrote or bool(gone)
    return wrote


def imply_all(session: Session, *, chunk: int = _CHUNK) -> int:
    """Derive the implied rejections (and so the terms and totals) of every image a person
    rejected a label on, ``chunk`` images at a time (migration 0013, ``python -m
    labelkit.db.counts --implied``); returns the images visited."""
    done, after = 0, ""
    while True:
        ids = list(
            session.scalars(
                select(LabelRow.image_id)
                .where(
                    LabelRow.source == LabelSource.HUMAN,
                    LabelRow.review == ReviewState.REJECTED,
                    LabelRow.image_id > after,
                )
                .group_by(LabelRow.image_id)
                .order_by(LabelRow.image_id)
                .limit(chunk)
            )
        )
        if not ids:
            return done
        with counting(session, ids):
            pass  # counting derives what the rows imply on the way out
        done += len(ids)
        after = ids[-1]


# --------------------------------------------------------------------------- running totals


def _lock(session: Session, ids: Sequence[str]) -> dict[str, str]:
    """Lock the images (in id order) and return their owners."""
    owners: dict[str, str] = {}
    dialect = _dialect(session)
    conn = session.connection()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        if dialect == "sqlite":
            # A no-op write takes SQLite's write lock now, before the snapshot is read.
            conn.execute(
                update(Image)
                .where(Image.id.in_(chunk))
                .values(attempts=Image.attempts, updated_at=Image.updated_at)
            )
            stmt = select(Image.id, Image.owner_id).where(Image.id.in_(chunk))
        else:
            stmt = (
                select(Image.id, Image.owner_id)
                .where(Image.id.in_(chunk))
                .order_by(Image.id)
                .with_for_update()
            )
        owners.update({str(i): str(o) for i, o in conn.execute(stmt)})
    return owners


def _snapshot(session: Session, owners: dict[str, str]) -> dict[Key, int]:
    """What these images contribute to the totals now (committed rows plus this transaction's)."""
    ids = sorted(owners)
    return _contributions(owners, _read_labels(session, ids), _read_terms(session, ids))


def _contributions(owners: dict[str, str], labels: Rows, terms: Rows) -> dict[Key, int]:
    """What images with these rows contribute to the totals (keys as :func:`apply` takes)."""
    out: dict[Key, int] = defaultdict(int)
    for image_id, owner in owners.items():
        rows = labels.get(image_id, [])
        human_names = {r[3] for r in rows if r[1] == LabelSource.HUMAN}
        rejected = {
            r[3] for r in rows if r[1] == LabelSource.HUMAN and r[4] == 0 and r[5] == ReviewState.REJECTED
        }
        versions: set[str] = set()
        for _, source, version, name, instance, review, milli, bin_, *_ in rows:
            if instance != 0:
                continue
            if source in MACHINE_SOURCES:
                if source == LabelSource.MODEL:
                    versions.add(version)
                if name not in rejected:
                    out["label", owner, name, "model_rows"] += 1
                    out["label", owner, name, "confidence_milli"] += int(milli)
                    out["bin", owner, int(bin_)] += 1
                if name not in human_names:
                    out["label", owner, name, "awaiting"] += 1
            elif review == ReviewState.CONFIRMED:
                out["label", owner, name, "confirmed"] += 1
            elif review == ReviewState.REJECTED:
                out["label", owner, name, "rejected"] += 1
        for version in versions:
            out["term", owner, MODEL_VERSION, version] += 1
        searchable: set[str] = set()
        for _, kind, term, _ in terms.get(image_id, []):
            if kind == TermKind.TEXT:
                continue  # words read in the photo: searched, not counted
            out["term", owner, TermKind(kind).value, term] += 1
            if kind in (TermKind.LABEL, TermKind.PARENT):
                searchable.add(term)
        for term in searchable:
            # One definition of "images with X" (the gallery's label filter): a label or a parent.
            out["term", owner, ANY, term] += 1
            out["label", owner, term, "images"] += 1
    return out


def _upsert_adding(session: Session, table: Any, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """Insert rows, or add their ``columns`` to the existing row's."""
    if not rows:
        return
    dialect = _dialect(session)
    pk = [c.name for c in table.primary_key.columns]
    if dialect in ("mysql", "mariadb"):
        my = mysql_dialect.insert(table)
        stmt: Any = my.on_duplicate_key_update({c: table.c[c] + my.inserted[c] for c in columns})
    elif dialect == "sqlite":
        ins = sqlite_dialect.insert(table)
        stmt = ins.on_conflict_do_update(
            index_elements=pk, set_={c: table.c[c] + ins.excluded[c] for c in columns}
        )
    else:  # pragma: no cover - other backends are not supported
        raise NotImplementedError(dialect)
    session.connection().execute(stmt, sorted(rows, key=lambda r: tuple(r[k] for k in pk)))


def apply(session: Session, delta: dict[Key, int]) -> None:
    """Add ``delta`` (keys as in :func:`_snapshot`) to the owners' rows and to ``*``'s."""
    label_rows: dict[tuple[str, str], dict[str, Any]] = {}
    term_rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    bin_rows: dict[tuple[str, int], dict[str, Any]] = {}
    for key, n in delta.items():
        if not n:
            continue
        kind, owner = key[0], key[1]
        for who in (owner, ALL_OWNERS):
            if kind == "label":
                _, _, name, column = key
                row = label_rows.setdefault(
                    (who, name), {"owner_id": who, "name": name, **dict.fromkeys(LABEL_COLUMNS, 0)}
                )
                row[column] += n
            elif kind == "term":
                _, _, term_kind, term = key
                trow = term_rows.setdefault(
                    (who, term_kind, term), {"owner_id": who, "kind": term_kind, "term": term, "images": 0}
                )
                trow["images"] += n
            else:
                _, _, bin_ = key
                brow = bin_rows.setdefault((who, bin_), {"owner_id": who, "bin": bin_, "labels": 0})
                brow["labels"] += n
    _upsert_adding(session, LabelCount.__table__, list(label_rows.values()), LABEL_COLUMNS)
    _upsert_adding(session, TermCount.__table__, list(term_rows.values()), ("images",))
    _upsert_adding(session, ConfidenceBin.__table__, list(bin_rows.values()), ("labels",))


@contextmanager
def counting(session: Session, image_ids: Iterable[str]) -> Iterator[None]:
    """Keep the terms and totals in step with whatever the body writes to these images' labels.

    The body writes label rows only: the images' ``image_terms`` are derived from them
    afterwards (:func:`derive_terms`). Images that do not exist are ignored (they contribute
    nothing before or after). Do not nest: an inner ``counting`` of the same image would be
    counted twice.
    """
    session.flush()
    owners = _lock(session, sorted(set(image_ids)))
    before = _snapshot(session, owners)
    yield
    session.flush()
    ids = sorted(owners)
    labels = _read_labels(session, ids)
    if _imply(session, ids, labels):  # a rejection ends the roll-ups that were only its evidence
        labels = _read_labels(session, ids)
    terms = _read_terms(session, ids)
    floors = read_floors(session, set(owners.values()))
    if _derive(session, ids, labels, terms, owners, floors):
        terms = _read_terms(session, ids)  # as stored (MySQL folds case in the key)
    after = _contributions(owners, labels, terms)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in before.keys() | after.keys()}
    apply(session, delta)


# --------------------------------------------------------------------------- rebuild


def rebuild(session: Session) -> None:
    """Recompute every total from ``labels`` and ``image_terms`` (bulk SQL, any size).

    ``image_terms`` is taken as it is (derived on every write); :func:`derive_all_terms`
    derives it again from the labels first when rows were written behind the queries' back."""
    dialect = _dialect(session)
    for table in (LabelCount, TermCount, ConfidenceBin):
        session.execute(delete(table))
    model0 = and_(LabelRow.source == LabelSource.MODEL, LabelRow.instance == 0)  # model versions
    human0 = and_(LabelRow.source == LabelSource.HUMAN, LabelRow.instance == 0)
    effective = and_(*not_rejected())
    awaiting = and_(*awaiting_review())

    def total(cond: ColumnElement[bool], value: Any = 1) -> ColumnElement[Any]:
        return func.coalesce(func.sum(case((cond, value), else_=0)), 0)

    zero = literal(0)
    from_labels = (
        select(
            Image.owner_id.label("owner_id"),
            LabelRow.name.label("name"),
            zero.label("images"),
            total(effective).label("model_rows"),
            total(effective, _milli(dialect)).label("confidence_milli"),
            total(and_(human0, LabelRow.review == ReviewState.CONFIRMED)).label("confirmed"),
            total(and_(human0, LabelRow.review == ReviewState.REJECTED)).label("rejected"),
            total(awaiting).label("awaiting"),
        )
        .join(Image, Image.id == LabelRow.image_id)
        .where(LabelRow.instance == 0)
        .group_by(Image.owner_id, LabelRow.name)
    )
    # "Images with X": X is an (effective) label or a parent, as the gallery's label filter.
    from_terms = (
        select(
            Image.owner_id.label("owner_id"),
            ImageTerm.term.label("name"),
            func.count(func.distinct(ImageTerm.image_id)).label("images"),
            *(zero.label(c) for c in LABEL_COLUMNS[1:]),
        )
        .join(Image, Image.id == ImageTerm.image_id)
        .where(ImageTerm.kind.in_([TermKind.LABEL, TermKind.PARENT]))
        .group_by(Image.owner_id, ImageTerm.term)
    )
    both = union_all(from_labels, from_terms).subquery()
    per_label = select(both.c.owner_id, both.c.name, *(func.sum(both.c[c]) for c in LABEL_COLUMNS)).group_by(
        both.c.owner_id, both.c.name
    )
    session.execute(insert(LabelCount).from_select(["owner_id", "name", *LABEL_COLUMNS], per_label))
    per_term = (
        select(Image.owner_id, ImageTerm.kind, ImageTerm.term, func.count())
        .join(Image, Image.id == ImageTerm.image_id)
        .where(ImageTerm.kind != TermKind.TEXT)
        .group_by(Image.owner_id, ImageTerm.kind, ImageTerm.term)
    )
    per_any = (
        select(Image.owner_id, literal(ANY), ImageTerm.term, func.count(func.distinct(ImageTerm.image_id)))
        .join(Image, Image.id == ImageTerm.image_id)
        .where(ImageTerm.kind.in_([TermKind.LABEL, TermKind.PARENT]))
        .group_by(Image.owner_id, ImageTerm.term)
    )
    per_version = (
        select(
            Image.owner_id,
            literal(MODEL_VERSION),
            LabelRow.model_version,
            func.count(func.distinct(LabelRow.image_id)),
        )
        .join(Image, Image.id == LabelRow.image_id)
        .where(model0)
        .group_by(Image.owner_id, LabelRow.model_version)
    )
    for stmt in (per_term, per_any, per_version):
        session.execute(insert(TermCount).from_select(["owner_id", "kind", "term", "images"], stmt))
    bin_expr = _bin(dialect)
    per_bin = (
        select(Image.owner_id, bin_expr, func.count())
        .join(Image, Image.id == LabelRow.image_id)
        .where(effective)
        .group_by(Image.owner_id, bin_expr)
    )
    session.execute(insert(ConfidenceBin).from_select(["owner_id", "bin", "labels"], per_bin))

    # Everyone's totals are the owners' summed.
    everyone = [
        (
            LabelCount,
            ["owner_id", "name", *LABEL_COLUMNS],
            select(
                literal(ALL_OWNERS),
                LabelCount.name,
                *(func.sum(getattr(LabelCount, c)) for c in LABEL_COLUMNS),
            ).group_by(LabelCount.name),
        ),
        (
            TermCount,
            ["owner_id", "kind", "term", "images"],
            select(literal(ALL_OWNERS), TermCount.kind, TermCount.term, func.sum(TermCount.images)).group_by(
                TermCount.kind, TermCount.term
            ),
        ),
        (
            ConfidenceBin,
            ["owner_id", "bin", "labels"],
            select(literal(ALL_OWNERS), ConfidenceBin.bin, func.sum(ConfidenceBin.labels)).group_by(
                ConfidenceBin.bin
            ),
        ),
    ]
    for model, columns, stmt in everyone:
        # MySQL cannot read the table it inserts into in one statement: read, then insert.
        rows = [dict(zip(columns, r, strict=True)) for r in session.execute(stmt)]
        for start in range(0, len(rows), 5000):
            session.execute(insert(model), rows[start : start + 5000])


def dump(session: Session) -> dict[str, set[tuple[Any, ...]]]:
    """Every non-zero total, as sets of plain tuples (for comparing two states). On MySQL the
    names are case-folded: its collation makes "Pagoda" and "pagoda" one row, spelled as
    whichever came first (a rebuild may pick the other spelling of the same row)."""
    fold = (lambda t: str(t).casefold()) if _dialect(session) != "sqlite" else (lambda t: t)
    label_rows = {
        (r.owner_id, fold(r.name), *(int(getattr(r, c)) for c in LABEL_COLUMNS))
        for r in session.scalars(select(LabelCount))
        if any(getattr(r, c) for c in LABEL_COLUMNS)
    }
    term_rows = {
        (r.owner_id, r.kind, fold(r.term), int(r.images))
        for r in session.scalars(select(TermCount))
        if r.images
    }
    bin_rows = {
        (r.owner_id, int(r.bin), int(r.labels)) for r in session.scalars(select(ConfidenceBin)) if r.labels
    }
    return {"label_counts": label_rows, "term_counts": term_rows, "confidence_bins": bin_rows}


def main(argv: list[str] | None = None) -> int:
    """``python -m labelkit.db.counts``: recompute the running totals from the rows."""
    from labelkit.db.engine import get_engine, transaction
    from labelkit.settings import get_settings

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--check", action="store_true", help="only compare, and exit 1 if they differ")
    parser.add_argument(
        "--terms",
        action="store_true",
        help="derive every image's image_terms from its labels again first (slow: all images)",
    )
    parser.add_argument(
        "--implied",
        action="store_true",
        help="derive the rejections people's rejections imply first (images with a rejection)",
    )
    args = parser.parse_args(argv)
    engine = get_engine(get_settings())
    with transaction(engine) as s:
        current = dump(s)
        if args.implied:
            imply_all(s)
        if args.terms:
            derive_all_terms(s)
            derive_all_text_terms(s)
        rebuild(s)
        fresh = dump(s)
        differ = current != fresh
        if args.check:
            s.rollback()
    state = "differed from the rows" if differ else "matched the rows"
    sys.stdout.write(f"running totals {state}" + ("" if args.check else "; rebuilt") + "\n")
    return 1 if (args.check and differ) else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
