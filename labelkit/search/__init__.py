"""Search that understands words: the query syntax (:func:`parse`), term expansion
(:mod:`labelkit.search.expand`: names, aliases, parents, categories, related words through
the text model) and the ranked, explained gallery page (:class:`Searcher`, over
:mod:`labelkit.db.queries.search`).

Importing this package is cheap: the model loads on the first search that needs it.
"""

from __future__ import annotations

from labelkit.search.query import Query, parse

__all__ = ["Query", "parse"]
