"""The committed taxonomy and label rules are valid, and bad rules fail loudly."""

from __future__ import annotations

import json

import pytest
import yaml

from labelkit.labelers.taxonomy import RULES_PATH, TAXONOMY_PATH, RulesError, load_rules, load_rules_text

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def rules_data() -> dict:
    return yaml.safe_load(RULES_PATH.read_text())


def _load(data: dict) -> object:
    return load_rules_text(yaml.safe_dump(data), TAXONOMY_PATH.read_text())


def test_committed_rules_are_valid() -> None:
    rules = load_rules()
    names = [e.name for e in rules.entries]
    assert len(names) == len(set(names))
    for required in (
        "Animal",
        "Mammal",
        "Pet",
        "Dog",
        "Cat",
        "Bird",
        "Vehicle",
        "Car",
        "Food",
        "Beverage",
        "Building",
        "Plant",
        "Flower",
        "Person",
    ):
        assert required in names
    by_name = {e.name: e for e in rules.entries}
    assert by_name["Cat"].parents == ("Pet", "Mammal", "Animal")
    assert by_name["Golden Retriever"].parents[0] == "Dog"
    assert "Tabby" not in by_name  # hidden: shown as Cat
    assert 0 < by_name["Animal"].threshold <= 1


def test_taxonomy_is_the_standard_imagenet_order() -> None:
    taxonomy = json.loads(TAXONOMY_PATH.read_text())
    wnids = [c["wnid"] for c in taxonomy["classes"]]
    assert len(wnids) == 1000 and wnids == sorted(wnids)
    assert taxonomy["classes"][0]["names"][0] == "tench"
    assert taxonomy["classes"][281]["names"][0] == "tabby"
    assert taxonomy["classes"][967]["names"][0] == "espresso"
    assert taxonomy["classes"][999]["names"][0] == "toilet tissue"
    assert taxonomy["classes"][207]["ancestors"][-1] == "n00001740"  # golden retriever ... entity


def test_rollup_sums_leaves() -> None:
    import numpy as np

    rules = load_rules()
    probs = np.zeros((1, 1000), np.float32)
    probs[0, 281] = 0.5  # tabby
    probs[0, 285] = 0.3  # Egyptian cat
    probs[0, 207] = 0.2  # golden retriever
    mass = dict(zip((e.name for e in rules.entries), rules.mass(probs)[0], strict=True))
    assert mass["Cat"] == pytest.approx(0.8)
    assert mass["Dog"] == pytest.approx(0.2)
    assert mass["Animal"] == pytest.approx(1.0)
    conf = dict(zip((e.name for e in rules.entries), rules.confidence(rules.mass(probs))[0], strict=True))
    assert conf["Cat"] > 55 > conf["Dog"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(colour="red"), "Extra inputs"),
        (lambda d: d["labels"][0].update(threshold=1.5), "less than or equal to 1"),
        (lambda d: d["labels"][0].update(threshold=0), "greater than 0"),
        (lambda d: d["labels"][0].update(synonyms=["x"]), "Extra inputs"),
        (lambda d: d["labels"][0].update(categories=["Unknown Category"]), "not declared"),
        (lambda d: d["labels"][0].update(synsets=["cat"]), "WordNet noun ids"),
        (lambda d: d["labels"][0].update(synsets=["n99999999"]), "not in the taxonomy"),
        (lambda d: d["labels"].append(dict(d["labels"][0])), "duplicate label names"),
        (lambda d: d["classes"].update(n02123045={"hide": False}), "names used twice"),
        (lambda d: d["classes"].update(n00015388={"name": "X"}), "not one of the 1,000"),
    ],
)
def test_bad_rules_are_rejected(rules_data: dict, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(json.dumps(rules_data))  # deep copy
    mutate(data)
    if message == "names used twice":
        # un-hiding tabby is fine; naming it like a group label is not
        data["classes"]["n02123045"] = {"name": "Cat"}
    with pytest.raises(RulesError, match=message):
        _load(data)


def test_not_yaml_is_rejected() -> None:
    with pytest.raises(RulesError):
        load_rules_text("labels: [", TAXONOMY_PATH.read_text())
