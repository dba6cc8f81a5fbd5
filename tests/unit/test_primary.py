"""The headline label: the newcomer's wrong headlines from issue 26, each as a case."""

from __future__ import annotations

import pytest

from labelkit.domain import BoundingBox, Instance, Label
from labelkit.primary import Candidate, choose, primary_of_labels, vocabulary

ANIMAL = ("Animals and Pets",)
PERSON = ("Person Description",)


def _c(
    name: str,
    conf: float,
    *boxes: tuple[float, float, float, float],
    cats: tuple[str, ...] = (),
    parents: tuple[str, ...] = (),
    added: bool = False,
) -> Candidate:
    return Candidate(
        name=name, confidence=conf, categories=cats, parents=parents, boxes=boxes, added_by_person=added
    )


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # Frisbee over Dog 100: an accessory never heads a photo with an animal
        (
            [
                _c("Frisbee", 97, (0.3, 0.2, 0.4, 0.4), cats=("Hobbies and Interests",), parents=("Toy",)),
                _c("Toy", 96, cats=("Hobbies and Interests",)),
                _c("Dog", 100, (0.0, 0.5, 0.2, 0.3), cats=ANIMAL, parents=("Pet", "Animal")),
                _c("Pet", 99, cats=ANIMAL),
                _c("Grass", 80, cats=("Nature and Outdoors",)),
            ],
            "Dog",
        ),
        # Sky over Liner: an object covering a tenth of the photo heads it over the scene
        (
            [
                _c("Sky", 99, cats=("Nature and Outdoors",), parents=("Outdoors",)),
                _c("Outdoors", 99, cats=("Nature and Outdoors",)),
                _c("Liner", 80, (0.1, 0.4, 0.8, 0.3), cats=("Vehicles and Automotive",), parents=("Ship",)),
                _c("Ship", 79, cats=("Vehicles and Automotive",)),
            ],
            "Liner",
        ),
        # Bowl over a burger: a dish (even one without a box) before its tableware
        (
            [
                _c("Bowl", 90, (0.2, 0.2, 0.6, 0.6), cats=("Kitchen and Dining",), parents=("Tableware",)),
                _c("Cheeseburger", 85, cats=("Food and Beverage",), parents=("Food",)),
            ],
            "Cheeseburger",
        ),
        # TV over the cat: an animal before an ordinary object of about its size
        (
            [
                _c("TV", 95, (0.0, 0.0, 0.5, 0.5), cats=("Technology and Computing",)),
                _c("Cat", 90, (0.4, 0.4, 0.35, 0.4), cats=ANIMAL),
            ],
            "Cat",
        ),
        # Tie over three smiling people: the people, named by their group label
        (
            [
                _c("Tie", 98, (0.45, 0.5, 0.05, 0.2), cats=("Apparel and Accessories",)),
                _c(
                    "Person",
                    99,
                    (0.0, 0.1, 0.3, 0.9),
                    (0.35, 0.1, 0.3, 0.9),
                    (0.7, 0.1, 0.3, 0.9),
                    cats=PERSON,
                ),
                _c("People", 99, cats=PERSON),
                _c("Group", 99, cats=PERSON),
            ],
            "Group",
        ),
        # one person: Person
        ([_c("Person", 99, (0.2, 0.0, 0.6, 1.0), cats=PERSON), _c("Space", 70)], "Person"),
        # a close-up face without a person box: still the person
        ([_c("Person", 90, cats=PERSON), _c("Face", 95, (0.3, 0.2, 0.4, 0.5), cats=PERSON)], "Person"),
        # a landscape: the specific scene, not Sky or Outdoors, over a far-away boat
        (
            [
                _c("Beach", 80, parents=("Outdoors",)),
                _c("Sky", 95, parents=("Outdoors",)),
                _c("Outdoors", 99),
                _c("Boat", 70, (0.6, 0.5, 0.05, 0.03), cats=("Vehicles and Automotive",)),
            ],
            "Beach",
        ),
        # a page of text: the Text scene
        ([_c("Text", 90, cats=("Text and Documents",))], "Text"),
        # a page: Document (under Text), not the Outdoors the scene head wrongly adds
        (
            [
                _c("Text", 100, cats=("Text and Documents",)),
                _c("Document", 100, cats=("Text and Documents",), parents=("Text",)),
                _c("Outdoors", 98),
            ],
            "Document",
        ),
        # a label a person added heads the photo, whatever the model found
        (
            [
                _c("Dog", 100, (0.0, 0.0, 0.9, 0.9), cats=ANIMAL),
                _c("Grandma's House", 100, added=True),
            ],
            "Grandma's House",
        ),
    ],
)
def test_the_headline_is_what_a_person_would_name(labels: list[Candidate], expected: str) -> None:
    assert choose(labels) == expected


def test_labels_below_the_shown_threshold_never_head_a_photo() -> None:
    labels = [_c("Dog", 40, (0.0, 0.0, 1.0, 1.0), cats=ANIMAL), _c("Grass", 60)]
    assert choose(labels) == "Grass"
    assert choose([_c("Dog", 40, (0.0, 0.0, 1.0, 1.0), cats=ANIMAL)]) is None


def test_the_rule_reads_the_labellers_own_scene_and_group_names() -> None:
    vocab = vocabulary()
    assert {"beach", "indoors", "outdoors", "sky", "text"} <= vocab.scenes
    assert vocab.person == "person" and vocab.face == "face"
    assert vocab.groups == ("crowd", "group", "people")


def test_a_labellers_output_gets_its_headline_from_its_boxes() -> None:
    box = Instance(box=BoundingBox(left=0.1, top=0.1, width=0.8, height=0.8), confidence=99)
    labels = [
        Label(name="Frisbee", confidence=99, categories=["Hobbies and Interests"], instances=[box]),
        Label(name="Dog", confidence=90, categories=["Animals and Pets"], instances=[box]),
    ]
    assert primary_of_labels(labels) == "Dog"
    assert primary_of_labels([]) is None
