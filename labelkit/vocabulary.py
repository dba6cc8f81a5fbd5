"""Labels typed by hand, matched against the label names people and models already use.

A typed label is *folded* (spaces collapsed, case ignored: ``"  tabby   CAT"`` folds like
``"Tabby Cat"``) and compared with a vocabulary of known names and their aliases:

* folds to a known name: it *is* that name, spelled the known way (``"cat"`` -> ``"Cat"``);
* otherwise, known names it may mean are suggested, best first: a name one of whose aliases
  it is (``"tabby cat"`` -> ``"Cat"``; kept as typed, it is spelled like the alias,
  ``"Tabby Cat"``), names whose words are among its words or the other way round
  (``"red"`` -> ``"Red Thing"``), then close spellings (``"Cta"`` -> ``"Cat"``).

Pure functions: the dashboard supplies the vocabulary (the viewer's label names and parents,
and the names and aliases on the image at hand).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_NAME = 128  # the labels table's name column


def tidy(text: str) -> str:
    """Spaces collapsed and trimmed, cut to what the database stores; case kept."""
    return " ".join(text.split())[:MAX_NAME]


def fold(text: str) -> str:
    """The form two spellings of one label share: :func:`tidy`, case-folded."""
    return tidy(text).casefold()


@dataclass(frozen=True, slots=True)
class Term:
    name: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LabelMatch:
    typed: str  # as typed, tidied (spelled like the known alias it folds to, if any)
    exact: str | None  # the known name it folds to, spelled the known way
    suggestions: list[str] = field(default_factory=list)  # other known names it may mean, best first

    @property
    def name(self) -> str:
        """What to store when the person does not choose: the known spelling, else as typed."""
        return self.exact or self.typed


def match_label(typed: str, vocabulary: Iterable[Term], *, limit: int = 5) -> LabelMatch:
    """Match a typed label against known names and aliases (see the module docstring)."""
    clean = tidy(typed)
    key = fold(clean)
    words = set(key.split())
    names: dict[str, str] = {}  # folded -> spelling (the first seen wins)
    aliases: dict[str, list[str]] = {}  # folded name -> its folded aliases
    alias_spelling: dict[str, str] = {}  # folded alias -> spelling
    for term in vocabulary:
        folded = fold(term.name)
        if not folded:
            continue
        names.setdefault(folded, tidy(term.name))
        aliases.setdefault(folded, []).extend(fold(a) for a in term.aliases if fold(a))
        for a in term.aliases:
            if fold(a):
                alias_spelling.setdefault(fold(a), tidy(a))
    if not key:
        return LabelMatch(typed="", exact=None)
    exact = names.get(key)
    scored: dict[str, tuple[int, float]] = {}

    def offer(folded: str, rank: int, closeness: float = 0.0) -> None:
        if folded == key:
            return
        best = scored.get(folded)
        if best is None or (rank, -closeness) < (best[0], -best[1]):
            scored[folded] = (rank, closeness)

    for folded, alias_list in aliases.items():
        name_words = set(folded.split())
        if key in alias_list:
            offer(folded, 0)
        if name_words and (name_words < words or words < name_words):
            offer(folded, 1, len(name_words & words) / len(name_words | words))
        elif any(set(a.split()) < words or words < set(a.split()) for a in alias_list):
            offer(folded, 2)
    for folded in difflib.get_close_matches(key, list(names), n=limit, cutoff=0.65):
        offer(folded, 3, difflib.SequenceMatcher(None, key, folded).ratio())
    ranked = sorted(scored, key=lambda f: (scored[f][0], -scored[f][1], names[f]))
    # Typed as a known alias: kept, it is spelled the way the alias is.
    spelled = alias_spelling.get(key, clean)
    return LabelMatch(typed=spelled, exact=exact, suggestions=[names[f] for f in ranked[:limit]])
