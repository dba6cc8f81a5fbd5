"""Labels out of Labelkit and back in: shared tables, export formats, import.

One definition of each table, used by the notebooks, the dashboard's Export page
and ``python -m labelkit.interchange``. Every function takes a ``Session`` and a
:class:`~labelkit.domain.Viewer`; the queries live in :mod:`labelkit.db.queries`
(``bulk`` for the reads; same scoping: a non-admin sees only their images).

Tables (pandas)::

    images_frame(session, viewer)    one row per image
    labels_frame(session, viewer)    one row per label row (image level and each box): the CSV export
    review_frame(session, viewer)    one row per person's verdict, beside the model's confidence
    suggest_min_confidence(reviews)  per label, the lowest min_confidence keeping precision >= 0.9
    confidence_pairs(labels, a, b)   two model versions' confidences side by side (compare mode)

Export formats (:class:`ExportFormat`):

Every writer puts every box inside its image: boxes are clamped by their edges
(:func:`clamp_box`), and the edges are rounded, not the sizes (:func:`box_edges`), so
``x + w`` never passes the width in the file's own numbers.

``csv``
    :func:`labels_frame` as CSV (lists joined with ``"; "``, spreadsheet-safe), optionally
    with a UTF-8 byte order mark for Excel. A label a person rejected stays, marked
    ``review = rejected`` (the model said it, a person did not agree); read only rows whose
    ``review`` is not ``rejected`` for the labels an image carries.
``jsonl``
    One image per line with its labels. The round-trip format: importing it and
    exporting again gives the same file. A label is one entry per (source, model
    version, name) with its boxes (``instances``, fractions of the image). Model
    entries carry ``review``: the person's verdict on that name (``unreviewed``,
    ``confirmed``, ``rejected``); the verdict itself is the ``source: "human"``
    entry of the same name, as it is stored.
``coco``
    COCO detection JSON: ``images`` (``file_name`` = object key, or ``images/<name>`` in
    a bundle, plus ``labelkit_id``),
    ``categories`` (label names, ids from 1, ``supercategory`` = first parent),
    ``annotations`` for boxes (``bbox`` = ``[x, y, w, h]`` in pixels, ``score``,
    ``source``, ``model_version``, ``review``). COCO has no image-level labels, so
    they go in a top-level extension list ``image_labels`` (``id``, ``image_id``,
    ``category_id``, ``score``, ``source``, ``model_version``, ``review``) that COCO
    tools ignore. Labels a person rejected are left out of both (and of ``categories``):
    COCO has no field saying an annotation is wrong.
``manifest``
    Amazon SageMaker Ground Truth / Rekognition Custom Labels manifest, one JSON
    object per image: ``source-ref`` (``s3://bucket/key`` in S3 mode, the file path
    in local mode or ``s3://`` under a given base, ``images/<name>`` in a bundle); each
    positive label (model or human, never a rejected one) as a classification attribute
    ``label-N`` (the class id) with ``label-N-metadata``
    (``class-name``, ``confidence`` 0-1, ``type: groundtruth/image-classification``,
    ``human-annotated``, ``creation-date``, ``job-name``); boxes as ``bounding-box``
    (``image_size`` and ``annotations`` with ``class_id``, ``left``, ``top``,
    ``width``, ``height`` in pixels) with ``bounding-box-metadata`` (``class-map``,
    ``objects``, ``type: groundtruth/object-detection``, ...). Images without a
    positive label are left out (a manifest line needs a label).

Bundles (:func:`write_bundle`, COCO and manifests): a zip of the images under readable,
unique, safe names (:func:`bundle_names`) and the annotation file pointing at them, written
to a file member by member with each photo copied in pieces (never whole in memory). The
dashboard makes bundles up to a size (:func:`check_bundle_size`); :func:`bundle_command` is
the ``labelkit export`` line that makes any bundle.

Filters (:class:`ExportOptions`): owner (a username; non-admins only their own),
labels (a label name or a parent: images carrying any of them, and only the labels
that match), reviewed only (labels a person confirmed, plus labels people added),
upload date range, min confidence.

Import (:func:`import_lines`): a JSON Lines or manifest file back as human labels,
matched to images by ``image_id`` (then ``object_key``) or by the manifest's
``source-ref``. Images that are unknown (or not the importing user's) are
reported, never created. JSON Lines: ``source: "human"`` entries (or entries
with no ``source``, as hand-written files have) become human labels with their
``review`` (default ``confirmed``) and boxes; a model entry with a verdict and no
human entry of its name becomes that verdict; unreviewed model predictions are
skipped (they are the model's, already stored). Manifest: every class whose metadata
does not say ``human-annotated: "no"`` is a confirmed human label, boxes included;
``"no"`` classes are the model's predictions and are skipped with their boxes.
Boxes are checked (:func:`checked_box`): a line with a box that is not numbers,
starts outside the image, has no positive size or ends past the image by more than
1% is refused whole, with its line number and the reason; an edge a hair past the
image's is clamped onto it.
"""

from __future__ import annotations

from labelkit.interchange.boxes import BoxEntry, box_edges, clamp_box
from labelkit.interchange.bundle import (
    BUNDLE_FORMATS,
    BUNDLE_IMAGES,
    BundleSummary,
    Progress,
    bundle_file_name,
    bundle_names,
    photo_bytes,
    write_bundle,
)
from labelkit.interchange.coco import to_coco
from labelkit.interchange.csvfile import to_csv
from labelkit.interchange.exporter import (
    BundleTooLarge,
    Export,
    build_export,
    bundle_command,
    check_bundle_size,
    size_text,
)
from labelkit.interchange.gather import (
    ImageEntry,
    LabelEntry,
    collect,
    resolve_owner,
    viewer_for,
)
from labelkit.interchange.importer import EDGE_TOLERANCE, ImportReport, checked_box, import_lines, import_text
from labelkit.interchange.jsonl import jsonl_record, to_jsonl
from labelkit.interchange.manifest import (
    JOB_NAME,
    key_from_source_ref,
    manifest_record,
    source_ref,
    to_manifest,
)
from labelkit.interchange.options import FORMAT_FILES, FORMAT_TITLES, ExportFormat, ExportOptions
from labelkit.interchange.tables import (
    ALL_LABELS,
    IMAGE_COLUMNS,
    LABEL_COLUMNS,
    REVIEW_COLUMNS,
    SUGGESTION_COLUMNS,
    confidence_pairs,
    images_frame,
    labels_frame,
    review_frame,
    suggest_min_confidence,
)

__all__ = [
    "ALL_LABELS",
    "BUNDLE_FORMATS",
    "BUNDLE_IMAGES",
    "BoxEntry",
    "BundleSummary",
    "BundleTooLarge",
    "EDGE_TOLERANCE",
    "Export",
    "ExportFormat",
    "ExportOptions",
    "FORMAT_FILES",
    "FORMAT_TITLES",
    "IMAGE_COLUMNS",
    "ImageEntry",
    "ImportReport",
    "JOB_NAME",
    "LABEL_COLUMNS",
    "LabelEntry",
    "Progress",
    "REVIEW_COLUMNS",
    "SUGGESTION_COLUMNS",
    "box_edges",
    "build_export",
    "bundle_command",
    "bundle_file_name",
    "bundle_names",
    "check_bundle_size",
    "checked_box",
    "clamp_box",
    "collect",
    "confidence_pairs",
    "images_frame",
    "import_lines",
    "import_text",
    "jsonl_record",
    "key_from_source_ref",
    "labels_frame",
    "manifest_record",
    "photo_bytes",
    "resolve_owner",
    "review_frame",
    "size_text",
    "source_ref",
    "suggest_min_confidence",
    "to_coco",
    "to_csv",
    "to_jsonl",
    "to_manifest",
    "viewer_for",
    "write_bundle",
]
