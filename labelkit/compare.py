"""Compare mode: how far two labellers (model versions) agree on the same images.

With several labellers configured (``LABELKIT_LABELER=local,rekognition``) each image
carries one set of model rows per model version. The rows come from
:func:`labelkit.db.queries.stats.version_labels` (scoped by the viewer like every query);
this module is the maths over them, pure Python.

Matching rule (labellers name things differently: local "Cat" vs Rekognition
"Cat"/"Kitten"): on one image, side A's *vocabulary* is every name, parent and alias of
A's image-level labels (case-insensitive); likewise for B. A label name found on either
side counts as *agreed* when it is in both vocabularies, i.e. the other labeller has it as
a label, a parent or an alias. Per image::

    jaccard = |agreed names| / |names labelled by A or B|

(1.0 when both ran and found nothing). Overall agreement is the mean of that over the
images both versions labelled. Per label name: images where A has it, where B has it,
where it is agreed, and the label's Jaccard = agreed / (A or B has it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from labelkit.db.queries import stats as stats_q
from labelkit.domain import Viewer

# (name, parents, aliases) of one image-level model label
_Row = tuple[str, list[str] | None, list[str] | None]


@dataclass(frozen=True, slots=True)
class LabelAgreement:
    name: str
    a_images: int  # images where A has this label
    b_images: int  # images where B has it
    both: int  # images where it is agreed (see the matching rule above)
    either: int  # images where A or B has it

    @property
    def jaccard(self) -> float:
        return self.both / self.either if self.either else 0.0


@dataclass(frozen=True, slots=True)
class Agreement:
    version_a: str
    version_b: str
    images: int  # images labelled by both versions
    mean_jaccard: float | None  # None when no image has both
    labels: list[LabelAgreement] = field(default_factory=list)
    per_image: dict[str, float] = field(default_factory=dict)


def _vocabulary(rows: Iterable[_Row]) -> tuple[set[str], set[str]]:
    """(label names, names + parents + aliases), case-folded."""
    names: set[str] = set()
    vocab: set[str] = set()
    for name, parents, aliases in rows:
        key = name.strip().casefold()
        names.add(key)
        vocab.add(key)
        vocab.update(p.strip().casefold() for p in (parents or []) if p)
        vocab.update(a.strip().casefold() for a in (aliases or []) if a)
    return names, vocab


def image_agreement(a: Iterable[_Row], b: Iterable[_Row]) -> tuple[float, set[str], set[str], set[str]]:
    """One image's Jaccard under the matching rule, with A's names, B's names and the agreed names."""
    a_names, a_vocab = _vocabulary(a)
    b_names, b_vocab = _vocabulary(b)
    union = a_names | b_names
    agreed = union & a_vocab & b_vocab
    return (len(agreed) / len(union) if union else 1.0), a_names, b_names, agreed


def labeller_agreement(
    *, session: Session, viewer: Viewer, version_a: str, version_b: str, limit: int = 500_000
) -> Agreement:
    """How far two model versions agree on the viewer's images that both labelled."""
    found = stats_q.version_labels(
        session=session, viewer=viewer, version_a=version_a, version_b=version_b, limit=limit
    )
    per: dict[str, dict[str, list[_Row]]] = {}
    display: dict[str, str] = {}
    for image_id, version, name, parents, aliases in found.rows:
        per.setdefault(image_id, {}).setdefault(version, []).append((name, parents, aliases))
        display.setdefault(name.strip().casefold(), name)
    # Images both versions ran on, even if one found nothing (its rows are then absent).
    for image_id in found.ran_both:
        sides = per.setdefault(image_id, {})
        sides.setdefault(version_a, [])
        sides.setdefault(version_b, [])
    tally: dict[str, list[int]] = {}  # name -> [a, b, both, either]
    per_image: dict[str, float] = {}
    for image_id, sides in per.items():
        if version_a not in sides or version_b not in sides:
            continue  # compared only where both versions labelled the image
        score, a_names, b_names, agreed = image_agreement(sides[version_a], sides[version_b])
        per_image[image_id] = score
        for key in a_names | b_names:
            c = tally.setdefault(key, [0, 0, 0, 0])
            c[0] += key in a_names
            c[1] += key in b_names
            c[2] += key in agreed
            c[3] += 1
    labels = sorted(
        (
            LabelAgreement(name=display[k], a_images=a, b_images=b, both=both, either=either)
            for k, (a, b, both, either) in tally.items()
        ),
        key=lambda la: (-la.either, la.name.casefold()),
    )
    mean = sum(per_image.values()) / len(per_image) if per_image else None
    return Agreement(
        version_a=version_a,
        version_b=version_b,
        images=len(per_image),
        mean_jaccard=mean,
        labels=labels,
        per_image=per_image,
    )
