"""The search box's syntax: ``parse(text) -> Query``.

====================  =====================================================
``dog beach``         both (AND): words side by side must all match
``dog -cat``          not: ``-`` before a word leaves out what it matches
``dog | cat``         either (OR); ``dog OR cat`` and ``dog|cat`` too
``"hot dog"``         a phrase: quoted words are one term
``similar:<id>``      photos like image ``<id>`` (kept in ``Query.similar_to``)
====================  =====================================================

Precedence: OR binds tighter than AND, so ``dog | cat beach`` is (dog OR cat) AND beach,
and ``-`` applies to the whole OR group that follows it: ``-dog | cat`` leaves out dogs and
cats. Case is ignored (terms are folded: spaces collapsed, case-folded). A ``|`` with no
term on one side is ignored; an unclosed quote runs to the end of the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from labelkit.vocabulary import fold

SIMILAR_PREFIX = "similar:"
_TOKEN = re.compile(r'\s*(?:(\|)|(-?)"([^"]*)(?:"|$)|([^\s|"]+))')


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: every ``include`` group must match (each group: any of its terms),
    no ``exclude`` group may. Terms are folded (see :func:`labelkit.vocabulary.fold`)."""

    include: tuple[tuple[str, ...], ...] = ()
    exclude: tuple[tuple[str, ...], ...] = ()
    similar_to: str | None = None

    @property
    def empty(self) -> bool:
        return not self.include and not self.exclude and self.similar_to is None

    def terms(self) -> list[str]:
        """Every term, once, in order (include first)."""
        seen: dict[str, None] = {}
        for group in (*self.include, *self.exclude):
            for term in group:
                seen.setdefault(term, None)
        return list(seen)

    def __str__(self) -> str:
        def show(term: str) -> str:
            return f'"{term}"' if " " in term else term

        parts = [" | ".join(show(t) for t in g) for g in self.include]
        parts += ["-" + " | ".join(show(t) for t in g) for g in self.exclude]
        if self.similar_to:
            parts.append(SIMILAR_PREFIX + self.similar_to)
        return " ".join(parts)


def _tokens(text: str) -> list[tuple[str, bool, str]]:
    """(kind, negated, value): kind is "or" or "term"."""
    out: list[tuple[str, bool, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        bar, neg, phrase, word = m.groups()
        if bar:
            out.append(("or", False, ""))
        elif phrase is not None:
            out.append(("term", bool(neg), phrase))
        elif word:
            if word.upper() == "OR" and word.isupper():
                out.append(("or", False, ""))
            elif word.startswith("-") and len(word) > 1:
                out.append(("term", True, word[1:]))
            elif word != "-":
                out.append(("term", False, word))
    return out


def parse(text: str) -> Query:
    """Parse the search box's text (see the module docstring for the syntax)."""
    groups: list[tuple[bool, list[str]]] = []  # (negated, terms)
    similar: str | None = None
    joining = False  # the last token was "|": the next term joins the last group
    for kind, negated, value in _tokens(text or ""):
        if kind == "or":
            joining = bool(groups)
            continue
        if value.casefold().startswith(SIMILAR_PREFIX) and len(value) > len(SIMILAR_PREFIX):
            similar = value[len(SIMILAR_PREFIX) :].strip()
            joining = False
            continue
        term = fold(value)
        if not term:
            joining = False
            continue
        if joining:
            groups[-1][1].append(term)
        else:
            groups.append((negated, [term]))
        joining = False
    include = tuple(tuple(dict.fromkeys(t)) for neg, t in groups if not neg)
    exclude = tuple(tuple(dict.fromkeys(t)) for neg, t in groups if neg)
    return Query(include=include, exclude=exclude, similar_to=similar or None)
