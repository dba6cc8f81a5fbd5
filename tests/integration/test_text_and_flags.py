"""Words read in photos and the Explicit flag, written by the worker and read back, on SQLite
and MariaDB: search finds a photo by a word on it, the JSON Lines export carries the text, a
re-delivery writes nothing new, relabelling replaces the text, deleting the photo removes it,
and the running totals never count the words. Through the real write path (upload, local
queue, pipeline) with a labeller that returns chosen text (the models have tests/model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from labelkit.db import counts
from labelkit.db.engine import transaction
from labelkit.db.models import ImageTerm, ImageTextRow, ReviewState, TermKind
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import text as text_q
from labelkit.db.queries import users as user_q
from labelkit.domain import BoundingBox, Label, LabelResult, ModerationLabel, TextDetection, Viewer
from labelkit.interchange.gather import collect
from labelkit.interchange.jsonl import to_jsonl
from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.pipeline import Pipeline
from labelkit.search.service import Searcher, SearchResult
from labelkit.services import Services, build_services
from labelkit.settings import Settings
from labelkit.uploads import delete_image, upload_image
from tests.integration.test_pipeline import jpeg


def _line(text: str, top: float, first_id: int, line_id: int) -> list[TextDetection]:
    """A line and its words (ids from ``first_id``), as the text model gives them."""
    box = BoundingBox(left=0.1, top=top, width=0.8, height=0.1)
    out = [TextDetection(text=text, type="LINE", id=line_id, confidence=97.0, box=box)]
    for i, word in enumerate(text.split()):
        w = BoundingBox(left=0.1 + 0.25 * i, top=top, width=0.2, height=0.1)
        out.append(
            TextDetection(
                text=word, type="WORD", id=first_id + i, parent_id=line_id, confidence=95.0 - i, box=w
            )
        )
    return out


def card(*lines: str) -> list[TextDetection]:
    """Lines (ids 0..n-1) then their words, as DetectText numbers them."""
    heads, words = [], []
    next_id = len(lines)
    for i, text in enumerate(lines):
        line, *its_words = _line(text, 0.1 + 0.2 * i, next_id, i)
        heads.append(line)
        words += its_words
        next_id += len(its_words)
    return heads + words


class ReadingLabeler:
    """Returns the text and flag it is told to (``said``), with a Text label when there is text."""

    def __init__(self, version: str = "local-1") -> None:
        self.version = version
        self.said: list[TextDetection] = []
        self.flagged = False

    @property
    def model_version(self) -> str:
        return self.version

    def label(self, image: ImageInput, options: LabelOptions) -> LabelResult:
        labels = [Label(name="Text", confidence=97.0, categories=["Text and Documents"])] if self.said else []
        return LabelResult(
            labels=labels + [Label(name="Card", confidence=80.0)],
            model_version=self.version,
            text=list(self.said),
            moderation=[ModerationLabel(name="Explicit", confidence=91.0)] if self.flagged else [],
        )


@pytest.fixture
def services(settings: Settings) -> Services:
    return build_services(settings)


def _user(services: Services, name: str, *, admin: bool = False) -> Viewer:
    with transaction(services.engine) as s:
        user = user_q.create_user(session=s, username=name, password_hash="x", is_admin=admin)
        return Viewer(user_id=user.id, is_admin=admin)


def _pipeline(services: Services, labeler: ReadingLabeler) -> Pipeline:
    return Pipeline(
        engine=services.engine,
        store=services.store,
        labelers=[labeler],
        options=LabelOptions(),
        max_receives=services.settings.queue_max_receives,
    )


def _labelled(
    services: Services, owner: Viewer, name: str, colour: tuple[int, int, int], labeler: ReadingLabeler
) -> tuple[str, str]:
    """Upload a photo and let the worker label it: (image id, the message's body)."""
    up = upload_image(services=services, owner_id=owner.user_id, filename=name, data=jpeg(colour))
    assert up.image_id
    msg = services.queue.receive(max_messages=1)[0]
    assert _pipeline(services, labeler).handle_message(msg.body)[0].status == "labelled"
    services.queue.delete(msg.receipt_handle)
    return up.image_id, msg.body


def _search(services: Services, viewer: Viewer, text: str, tmp_path: Path) -> SearchResult:
    with transaction(services.engine) as s:
        return Searcher(tmp_path / "no-models").search(session=s, viewer=viewer, text=text)


def _found(result: SearchResult) -> list[str]:
    return [hit.image.original_name for hit in result.page.items]


def _rows(services: Services, image_id: str) -> tuple[int, list[str]]:
    """(image_text rows, the image's text terms)."""
    with transaction(services.engine) as s:
        n = s.scalar(select(func.count()).select_from(ImageTextRow).where(ImageTextRow.image_id == image_id))
        terms = s.scalars(
            select(ImageTerm.term).where(ImageTerm.image_id == image_id, ImageTerm.kind == TermKind.TEXT)
        )
        return int(n or 0), sorted(terms)


def test_a_word_on_the_photo_finds_it_and_only_for_its_owner(services: Services, tmp_path: Path) -> None:
    alice, bob, admin = _user(services, "alice"), _user(services, "bob"), _user(services, "root", admin=True)
    reader = ReadingLabeler()
    # GIVEN Alice's photo of a card saying GET WELL SOON, and her photo of a plain wall
    reader.said = card("GET WELL SOON")
    _labelled(services, alice, "card.jpg", (200, 30, 30), reader)
    reader.said = []
    _labelled(services, alice, "wall.jpg", (30, 200, 30), reader)
    # WHEN she searches for a word on the card, in any case
    found = _search(services, alice, "soon", tmp_path)
    # THEN the card is found, and why says the word was read in it
    assert _found(found) == ["card.jpg"]
    assert found.page.items[0].why == ["soon, read in the photo"]
    assert found.unmatched == []
    assert _found(_search(services, alice, "Get WELL soon", tmp_path)) == ["card.jpg"]
    assert _found(_search(services, alice, "well -text", tmp_path)) == []
    # AND a word nobody's photo says still stands for nothing
    assert _search(services, alice, "birthday", tmp_path).unmatched == ["birthday"]
    # AND Bob's search does not see Alice's card; an administrator's does
    assert _found(_search(services, bob, "soon", tmp_path)) == []
    assert _search(services, bob, "soon", tmp_path).unmatched == ["soon"]
    assert _found(_search(services, admin, "soon", tmp_path)) == ["card.jpg"]


def test_the_text_is_stored_once_replaced_by_relabelling_exported_and_deleted_with_the_photo(
    services: Services, tmp_path: Path
) -> None:
    alice, bob = _user(services, "alice"), _user(services, "bob")
    reader = ReadingLabeler("local-1")
    reader.said = card("GET WELL SOON", "Love, Sam")
    image_id, body = _labelled(services, alice, "card.jpg", (200, 30, 30), reader)
    # THEN the lines and words are stored, and the words are its text terms
    assert _rows(services, image_id) == (7, ["get", "love", "sam", "soon", "well"])
    with transaction(services.engine) as s:
        (found,) = text_q.text_of_image(session=s, viewer=alice, image_id=image_id)
        assert [line.text for line in found.lines] == ["GET WELL SOON", "Love, Sam"]
        assert [w.text for w in found.words_of(found.lines[1])] == ["Love,", "Sam"]
        # AND the running totals do not count words (they equal a rebuild from the rows)
        running = counts.dump(s)
        counts.rebuild(s)
        assert counts.dump(s) == running
        assert not any(kind == TermKind.TEXT for _, kind, _, _ in running["term_counts"])
    # WHEN the same message is delivered again (the worker crashed before deleting it)
    pipeline = _pipeline(services, reader)
    assert pipeline.handle_message(body)[0].status == "skipped"
    with transaction(services.engine) as s:
        # ... or the write itself runs twice
        from labelkit.db.queries import worker as worker_q

        worker_q.save_text(
            session=s, image_id=image_id, model_version="local-1", text=card("GET WELL SOON", "Love, Sam")
        )
    # THEN nothing new is written
    assert _rows(services, image_id) == (7, ["get", "love", "sam", "soon", "well"])
    # WHEN a newer version of the labeller reads it again ("relabel") and reads other words
    newer = ReadingLabeler("local-2")
    newer.said = card("HAPPY BIRTHDAY")
    assert _pipeline(services, newer).handle_message(body)[0].status == "labelled"
    # THEN the old text is gone, the new one searchable
    assert _rows(services, image_id) == (3, ["birthday", "happy"])
    assert _found(_search(services, alice, "birthday", tmp_path)) == ["card.jpg"]
    assert _found(_search(services, alice, "soon", tmp_path)) == []
    # AND the JSON Lines export carries the text as DetectText, for its owner only
    with transaction(services.engine) as s:
        record = json.loads(to_jsonl(collect(session=s, viewer=alice)).decode())
        assert record["text"][0]["model_version"] == "local-2"
        assert [d["DetectedText"] for d in record["text"][0]["TextDetections"]] == [
            "HAPPY BIRTHDAY",
            "HAPPY",
            "BIRTHDAY",
        ]
        assert record["text"][0]["TextDetections"][1]["ParentId"] == 0
        assert collect(session=s, viewer=bob) == []
    # WHEN the photo is deleted
    delete_image(services=services, viewer=alice, image_id=image_id)
    # THEN its text and its words go with it
    assert _rows(services, image_id) == (0, [])


def test_a_flagged_photo_is_flagged_until_a_person_rejects_the_flag(
    services: Services, tmp_path: Path
) -> None:
    alice, bob = _user(services, "alice"), _user(services, "bob")
    reader = ReadingLabeler()
    reader.flagged = True
    flagged, _ = _labelled(services, alice, "flagged.jpg", (200, 30, 30), reader)
    reader.flagged = False
    plain, _ = _labelled(services, alice, "plain.jpg", (30, 30, 200), reader)
    with transaction(services.engine) as s:
        # THEN the flag is a label of the photo (category Moderation), found by its alias
        assert text_q.flagged_images(session=s, viewer=alice, image_ids=[flagged, plain]) == {flagged}
        assert text_q.flagged_images(session=s, viewer=bob, image_ids=[flagged, plain]) == set()
        row = next(
            r
            for r in label_q.labels_for_image(session=s, viewer=alice, image_id=flagged)
            if r.name == "Explicit"
        )
        assert row.categories == ["Moderation"] and row.confidence == pytest.approx(91.0)
    assert _found(_search(services, alice, "nsfw", tmp_path)) == ["flagged.jpg"]
    # WHEN Alice rejects it (a false flag)
    with transaction(services.engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=flagged, name="Explicit", review=ReviewState.REJECTED
        )
    # THEN the photo is no longer flagged
    with transaction(services.engine) as s:
        assert text_q.flagged_images(session=s, viewer=alice, image_ids=[flagged, plain]) == set()
