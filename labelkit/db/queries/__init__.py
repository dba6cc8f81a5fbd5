"""Every query Labelkit makes, one module per aggregate.

=============  ==============================================================================
``users``      accounts: create, find, mirror from an identity provider; usernames by id
``images``     uploading, finding, the gallery's page and filters (``ImageFilter``), status
               counts, delete, retry and relabel, images by ids or keys, failed images
``worker``     the worker's writes and reads by object key: attempts, model labels (idempotent),
               labelled / failed, the reconciler's and relabeller's reads
``labels``     an image's labels; people's labels: confirm, reject, add, import, remove
``reviews``    the review queue per label and per photo; reviewing chosen photos at once
``stats``      aggregates for charts and pages: label and term counts, histograms, activity,
               co-occurrence, top labels, model versions (and the rows compare mode reads)
``bulk``       bulk reads behind ``labelkit.interchange`` (files out, DataFrames)
``thumbs``     stored gallery thumbnails: a page's thumbnail keys, recording one made late
``_scope``     what they share: scoping to a viewer, insert-or-ignore, the awaiting-review rule
=============  ==============================================================================

Functions are keyword-only and take ``session`` first; callers own the transaction.
Functions that act for a person take a :class:`~labelkit.domain.Viewer` and are scoped to
that person's images (admins see all): another user's image id behaves exactly like an id
that does not exist (``NotFound``). Worker-side functions are unscoped on purpose.

Every write to labels or terms runs inside :func:`labelkit.db.counts.counting`, which keeps
the running totals in step; the dashboard's counts and charts read those totals.

**How to import** (one convention everywhere outside this package): the module, under its
name in the singular with ``_q``, and every name through it, functions and types alike::

    from labelkit.db.queries import images as image_q
    from labelkit.db.queries import users as user_q

    page = image_q.list_images(session=s, viewer=v, flt=image_q.ImageFilter(label="Cat"))

The aliases are ``user_q``, ``image_q``, ``worker_q``, ``label_q``, ``review_q``, ``stats_q``,
``bulk_q`` (and ``scope_q`` for ``_scope``, which only the benchmarks reach into): none
shadows a local such as ``images`` or ``labels``, nor :mod:`labelkit.images` or
:mod:`labelkit.worker`. Inside the package, a module imports the names it needs from its
siblings.
"""
