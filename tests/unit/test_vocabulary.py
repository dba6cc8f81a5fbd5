"""Hand-typed labels matched against the vocabulary (issue 16, item 6)."""

from __future__ import annotations

import pytest

from labelkit.vocabulary import Term, fold, match_label, tidy

VOCAB = [
    Term("Cat", ("Tabby Cat", "Kitty")),
    Term("Dog"),
    Term("Animal"),
    Term("Red Thing"),
    Term("Thing"),
    Term("Coffee Cup"),
]


@pytest.mark.parametrize("typed", ["cat", "CAT", "  cat ", "Cat"])
def test_case_and_spaces_fold_to_the_known_spelling(typed: str) -> None:
    found = match_label(typed, VOCAB)
    assert found.exact == "Cat" and found.name == "Cat"


def test_spaces_inside_fold_too() -> None:
    assert fold("  red \t  THING ") == fold("Red Thing") == "red thing"
    assert tidy("  red \t  THING ") == "red THING"
    found = match_label("  red \t  THING ", VOCAB)
    assert found.exact == "Red Thing"
    assert found.suggestions == ["Thing"]  # its words include another known name


def test_tabby_cat_is_offered_cat_or_tabby_cat() -> None:
    # "tabby cat" is an alias of Cat: Cat is offered first; kept as typed it reads "Tabby Cat"
    found = match_label("tabby cat", VOCAB)
    assert found.exact is None
    assert found.suggestions[0] == "Cat"
    assert found.typed == "Tabby Cat"


@pytest.mark.parametrize(
    ("typed", "first"), [("kitty", "Cat"), ("Cta", "Cat"), ("cup", "Coffee Cup"), ("Anmal", "Animal")]
)
def test_suggestions_for_aliases_words_and_typos(typed: str, first: str) -> None:
    assert match_label(typed, VOCAB).suggestions[0] == first


def test_a_new_name_is_kept_as_typed() -> None:
    found = match_label("  Sofa  bed ", VOCAB)
    assert (found.exact, found.suggestions, found.name) == (None, [], "Sofa bed")


def test_nothing_typed() -> None:
    assert match_label("   ", VOCAB).typed == ""


def test_long_names_are_cut_to_what_is_stored() -> None:
    assert len(match_label("x" * 500, VOCAB).name) == 128
