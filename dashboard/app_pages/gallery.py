"""The gallery: the viewer's images, newest first, filtered, paginated; refreshes while labelling runs.

The filters and the page live in the URL (``dashboard/gallery_state.py``): a reload, the
back button or a link restores the view. A whole card opens its image (the image page's
URL carries the view, for its "Back to the gallery" and previous / next). Cards are laid out
one ``st.columns`` row at a time, so a narrow screen, which stacks columns, keeps them newest first.

Streamlit does not tell the server how wide the screen is, so what depends on it is done in
the browser (PAGE_CSS, FOLD_FILTERS_JS): the filters sit in a "Filters" expander, open and
headerless on a wide screen, folded on a phone; a new page of cards scrolls to its top.

A photo flagged Explicit (the moderation label, not rejected by a person) is blurred on its
card until someone clicks its "Show" button (for the rest of their session); an administrator
turns the blur off for everyone with ``LABELKIT_BLUR_EXPLICIT=false``.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st
from sqlalchemy.orm import Session

from dashboard import core
from dashboard import gallery_state as gs
from dashboard.navigation import Page
from labelkit.db.models import ImageStatus, TermKind
from labelkit.db.queries import bulk as bulk_q
from labelkit.db.queries import images as image_q
from labelkit.db.queries import stats as stats_q
from labelkit.db.queries import text as text_q
from labelkit.search.service import SearchResult, get_searcher
from labelkit.similar import SIMILAR_CUTOFF

PAGE_SIZE = gs.PAGE_SIZE
COLUMNS = 7  # cards a row on a wide screen (a narrow one stacks them, one a row)
REFRESH_SECONDS = 3
CARD_KEY = "gallery_card_"  # a card's container key: its CSS class is st-key-gallery_card_<id>
FILTERS_KEY = "gallery_filters"  # the filters' expander
COUNTS_KEY = "gallery_counts"  # the four status counts
GRID_KEY = "gallery_grid"  # the count, the cards and the pages: where a new page scrolls to
SEARCH_CUT = "_gallery_search_cut"  # True while the search shown is a longer text's first MAX_TEXT
BLUR_KEY = "gallery_blur_"  # the flagged photo's container: st-key-gallery_blur_<id>
REVEAL_KEY = "gallery_reveal_"  # its "Show" button
REVEALED = "_gallery_revealed"  # ids of the flagged photos shown in this session
NARROW = 640  # px: Streamlit stacks columns on screens at most this wide; the filters fold there
CARD = f'div[class*="st-key-{CARD_KEY}"]'
PAGE_CSS = f"""<style>
/* The card's "Open" link stretched over the whole card (its ::after fills the card, the
   nearest positioned box), so a click anywhere on the card, the photo included, opens the
   image with Streamlit's own page navigation (the session and its state stay). */
{CARD} {{ position: relative; padding: 0.5rem; }}
{CARD} [data-testid="stElementContainer"]:has([data-testid="stPageLink"]),
{CARD} [data-testid="stPageLink"],
{CARD} [data-testid="stPageLink"] * {{ position: static; }}
{CARD} [data-testid="stPageLink"] a::after {{
  content: ""; position: absolute; inset: 0; z-index: 2; cursor: pointer;
}}
{CARD} [data-testid="stPageLink"] a {{ padding: 0 0.125rem; min-height: 0; }}
{CARD} [data-testid="stPageLink"] [data-testid="stMarkdownContainer"] {{
  position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%);
}}
/* The status on the photo's top left corner (where there is a photo). */
{CARD}:has([data-testid="stImage"]) [data-testid="stElementContainer"]:has(.stMarkdownBadge) {{
  position: absolute; top: 0.875rem; left: 0.875rem; z-index: 1; width: auto;
}}
{CARD} .stMarkdownBadge {{ font-size: 0.75rem !important; }}
{CARD} [data-testid="stElementContainer"]:has([data-testid="stMarkdownContainer"] strong) {{
  min-width: 0; flex: 1 1 0;
}}
{CARD}:hover {{ border-color: var(--primary-color, #4f46e5); }}
/* A photo flagged Explicit: blurred (clipped to its frame) until its Show button, which sits
   above the card's link, is clicked. */
div[class*="st-key-{BLUR_KEY}"] {{ overflow: hidden; border-radius: 0.25rem; }}
div[class*="st-key-{BLUR_KEY}"] img {{ filter: blur(24px) saturate(0.6); transform: scale(1.15); }}
div[class*="st-key-{REVEAL_KEY}"] {{ position: relative; z-index: 3; }}
/* Small cards: the photo's name on one line, cut with an ellipsis (the link's tooltip and the
   image page name it in full); a label or a failure's reason on at most two lines. */
{CARD} [data-testid="stMarkdownContainer"] p {{
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
}}
{CARD} [data-testid="stCaptionContainer"] p {{
  display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden;
}}
/* The filters: on a wide screen their expander stands open without its header (it folds on
   a phone: FOLD_FILTERS_JS); a folded one keeps its header, so it can be opened again. */
@media (min-width: {NARROW + 1}px) {{
  .st-key-{FILTERS_KEY} details[open] > summary {{ display: none; }}
}}
/* The search box's "Press Enter to apply" under the box, not over the words typed in it. */
.st-key-{gs.KEY_LABEL} [data-testid="InputInstructions"] {{
  position: absolute; top: 100%; right: 0; bottom: auto; padding-top: 1px; line-height: 1.2;
}}
/* A phone shows the four counts two a row rather than a screenful of four boxes. */
@media (max-width: {NARROW}px) {{
  .st-key-{COUNTS_KEY} [data-testid="stHorizontalBlock"] {{ flex-wrap: wrap; gap: 0.5rem; }}
  .st-key-{COUNTS_KEY} [data-testid="stColumn"] {{ min-width: 0; flex: 1 1 calc(50% - 0.5rem); }}
  .st-key-{COUNTS_KEY} [data-testid="stMetricValue"] {{ font-size: 1.5rem; }}
}}
.st-key-{GRID_KEY} {{ scroll-margin-top: 4rem; }}
/* The scripts below draw nothing: no gap for them. */
[data-testid="stElementContainer"]:has(script[data-labelkit]) {{ display: none; }}
</style>"""
# Fold the filters once on a narrow screen (a phone sees the photos first). Runs when the
# gallery is drawn anew; the expander it folded is marked, so a rerun never folds it again.
FOLD_FILTERS_JS = f"""<script data-labelkit="fold-filters">
(() => {{
  if (!window.matchMedia("(max-width: {NARROW}px)").matches) return;
  let frames = 0;
  const fold = () => {{
    const box = document.querySelector(".st-key-{FILTERS_KEY} details");
    if (!box) {{ if (++frames < 600) requestAnimationFrame(fold); return; }}
    if (box.dataset.labelkitFolded) return;
    box.dataset.labelkitFolded = "yes";
    if (box.open) box.querySelector("summary").click();
  }};
  fold();
}})();
</script>"""
# After a change of page (Streamlit keeps the scroll position, down by the page buttons),
# bring the top of the new page into view. Streamlit runs it again when its text (the page
# number) changes; it remembers the page it saw, so nothing else moves the screen.
SCROLL_UP_JS = """<script data-labelkit="gallery-page" data-page="{page}">
(() => {{
  const page = "{page}", seen = window.labelkitGalleryPage;
  window.labelkitGalleryPage = page;
  if (seen === undefined || seen === page) return;
  const top = document.querySelector(".st-key-{grid}");
  if (top && top.getBoundingClientRect().top < 0) top.scrollIntoView({{ block: "start" }});
}})();
</script>"""


SIMILAR_MORE = "gallery_similar_more"  # the similar: search whose less similar photos are shown too


def _search(s: Session, text: str, flt: image_q.ImageFilter, page_no: int) -> SearchResult:
    return get_searcher(core.settings().resolved_model_dir).search(
        session=s,
        viewer=viewer,
        text=text,
        flt=flt,
        page=page_no,
        page_size=PAGE_SIZE,
        more=st.session_state.get(SIMILAR_MORE) == text,
    )


def _show_less_similar(text: str) -> None:
    st.session_state[SIMILAR_MORE] = text


def _less_similar(found: SearchResult) -> None:
    """similar:<id> stops at the cutoff: offer the photos below it."""
    if found.less_similar:
        n = found.less_similar
        st.button(
            f"Show {n} less similar photo{'s' if n != 1 else ''}",
            key="similar_more",
            icon=":material/expand_more:",
            on_click=_show_less_similar,
            args=(query_text,),
            help=f"Photos with a similarity below {SIMILAR_CUTOFF:.2f} (1 is the same photo): "
            "they may show another scene or subject.",
        )


def _reveal(image_id: str) -> None:
    """Show a flagged photo unblurred for the rest of this session."""
    st.session_state[REVEALED] = {*st.session_state.get(REVEALED, set()), image_id}


def _use_suggestion(name: str) -> None:
    st.session_state[gs.KEY_LABEL] = f'"{name}"' if " " in name else name
    st.session_state[SEARCH_CUT] = False
    gs.set_page(st.session_state, 1)


def _search_changed() -> None:
    """Keep the first MAX_TEXT characters of a longer search (typed or pasted) and say so."""
    text = st.session_state.get(gs.KEY_LABEL) or ""
    st.session_state[SEARCH_CUT] = len(text) > gs.MAX_TEXT
    if len(text) > gs.MAX_TEXT:
        st.session_state[gs.KEY_LABEL] = text[: gs.MAX_TEXT]


def _page_chosen(key: str) -> None:
    st.session_state[gs.KEY_PAGE] = st.session_state[key]


user = core.require_user()
viewer = user.viewer

st.title("Gallery")
core.show_flash()
st.html(PAGE_CSS)

# ------------------------------------------------------------------ the view in the URL
WRITTEN = "_gallery_url"  # the parameters this page last put in the URL


def _write_url(view: gs.GalleryState) -> None:
    """Keep the URL in step with the view (Streamlit pushes a history entry for a change)."""
    params = view.to_params()
    url = st.query_params.to_dict()
    if params != gs.gallery_params(url) or set(url) - set(params) or gs.search_cut(url):
        st.query_params.from_dict(params)
    st.session_state[WRITTEN] = params


url_view = gs.GalleryState.from_params(st.query_params.to_dict())
widgets_missing = any(k not in st.session_state for k in gs.FILTER_KEYS)
if widgets_missing or st.session_state.get(WRITTEN) != url_view.to_params():
    # A fresh load, back from another page (Streamlit forgot the widgets), the browser's back
    # button or a link (e.g. the Labels page's ?label=): the URL says what to show.
    url_view.seed(st.session_state)
    st.session_state[WRITTEN] = url_view.to_params()
    st.session_state[SEARCH_CUT] = gs.search_cut(st.query_params.to_dict())

with core.db() as s:
    categories = [t for t, _ in stats_q.term_counts(session=s, viewer=viewer, kind=TermKind.CATEGORY)]
    counts = image_q.status_counts(session=s, viewer=viewer)
    # id -> username of everyone whose photos the viewer sees: admins only (a user sees their own)
    owners = dict(bulk_q.image_owners(session=s, viewer=viewer)) if viewer.is_admin else {}
owner_ids = {name: uid for uid, name in owners.items()}
current_category = st.session_state.get(gs.KEY_CATEGORY)
if current_category and current_category not in categories:
    categories = [current_category, *categories]
if st.session_state.get(gs.KEY_OWNER) not in owner_ids:
    st.session_state[gs.KEY_OWNER] = None  # not an owner (or not an admin): no owner filter

REVIEW_CHOICES = {
    image_q.ReviewFilter.UNREVIEWED: "Awaiting review",
    image_q.ReviewFilter.REVIEWED: "Reviewed",
    image_q.ReviewFilter.REJECTED: "Has rejections",
}

with st.expander("Filters", expanded=True, key=FILTERS_KEY, icon=":material/filter_list:"):
    f1, f2, f3, f4, f5, f6 = st.columns([2.2, 1.4, 1.3, 1.5, 1.5, 1.9])
    # The search text lives in the URL's ?label= (a label name is a search for it). No
    # max_chars: the browser would drop a longer paste whole; _search_changed keeps its start.
    f1.text_input(
        "Search",
        key=gs.KEY_LABEL,
        placeholder="dog beach · dog -cat · dog | cat",
        on_change=_search_changed,
        help="Words match label names, aliases, parents and categories, ignoring case, related "
        "words (“puppy” finds dogs) and words read in the photos (“soon” finds a sign saying "
        "GET WELL SOON). `dog beach`: both; `dog -cat`: not cats; `dog | cat`: either "
        f'(| binds tighter than a space); `"hot dog"`: a phrase. At most {gs.MAX_TEXT} characters.',
    )
    f2.slider("Min confidence", 0, 100, step=5, key="flt_conf")
    f3.selectbox(
        "Status",
        [s.value for s in ImageStatus],
        index=None,
        key="flt_status",
        placeholder="Any status",
        format_func=lambda v: core.STATUS_STYLE[ImageStatus(v)][0],
    )
    f4.selectbox("Category", categories, index=None, key="flt_category", placeholder="Any category")
    f5.selectbox(
        "Review",
        [r.value for r in REVIEW_CHOICES],
        index=None,
        key="flt_review",
        placeholder="Any",
        format_func=lambda v: REVIEW_CHOICES[image_q.ReviewFilter(v)],
        help="Awaiting review: a model label nobody has confirmed or rejected yet. "
        "Reviewed: looked at by a person, nothing left to review. "
        "Has rejections: a person rejected at least one label.",
    )
    # No value: the range comes from the state (GalleryState.seed), not from a default as well.
    f6.date_input("Uploaded between", key=gs.KEY_DATES, format="YYYY-MM-DD")
    if st.session_state.get(SEARCH_CUT):
        st.caption(
            f":material/content_cut: Search is limited to {gs.MAX_TEXT} characters: "
            f"only the first {gs.MAX_TEXT} are searched."
        )

    if owners:  # admins: whose photos
        o1, _ = st.columns([2.2, 7.6])
        o1.selectbox(
            "Owner",
            sorted(owner_ids),
            index=None,
            key=gs.KEY_OWNER,
            placeholder="Everyone",
            help="Only this person's photos.",
        )
st.html(FOLD_FILTERS_JS, unsafe_allow_javascript=True)

view = gs.GalleryState.from_widgets(st.session_state)
last = gs.GalleryState.from_params(st.session_state.get(WRITTEN) or {})
if not view.same_filter(last):
    view = replace(view, page=1)  # another filter: its first page
    gs.set_page(st.session_state, 1)
_write_url(view)

flt = view.to_filter(owner_id=owner_ids.get(view.owner or ""))
filtering = flt != image_q.ImageFilter()
query_text = (flt.label or "").strip()  # searched (labelkit.search), not matched literally
flt = replace(flt, label=None)

m = st.container(key=COUNTS_KEY).columns(4)
for col, status in zip(m, ImageStatus, strict=True):
    name, icon, _ = core.STATUS_STYLE[status]
    col.metric(name, counts[status], border=True)

busy = counts[ImageStatus.PENDING] + counts[ImageStatus.LABELLING] > 0


def _grid() -> None:
    core.require_live_session()  # a fragment rerun skips the entry point's check
    page_no = int(st.session_state.get(gs.KEY_PAGE, 1) or 1)
    found: SearchResult | None = None
    why: dict[str, list[str]] = {}
    more = ""  # "+" when the search stopped counting (labelkit.db.queries.search.COUNT_CAP)
    with core.db() as s:
        if query_text:
            with st.spinner("Searching…"):
                found = _search(s, query_text, flt, page_no)
                if not found.page.items and found.page.total and page_no > found.page.pages:
                    found = _search(s, query_text, flt, found.page.pages)
                    gs.set_page(st.session_state, found.page.page)
            page = image_q.Page(
                items=[h.image for h in found.page.items],
                total=found.page.total,
                page=found.page.page,
                page_size=PAGE_SIZE,
            )
            why = {h.image.id: h.why for h in found.page.items}
            more = "+" if found.page.capped else ""
        else:
            page = image_q.list_images(session=s, viewer=viewer, flt=flt, page=page_no, page_size=PAGE_SIZE)
        if not query_text and not page.items and page.total and page_no > page.pages:
            # The filters shrank the result below the page we were on: show its last page.
            page = image_q.list_images(
                session=s, viewer=viewer, flt=flt, page=page.pages, page_size=PAGE_SIZE
            )
            gs.set_page(st.session_state, page.page)
        still_busy = image_q.status_counts(session=s, viewer=viewer)
        best = stats_q.primary_labels(session=s, viewer=viewer, image_ids=[i.id for i in page.items])
        flagged = (
            text_q.flagged_images(session=s, viewer=viewer, image_ids=[i.id for i in page.items])
            if core.settings().blur_explicit
            else set()
        )
    shown = replace(view, page=page.page)
    _write_url(shown)  # (also after a page change, which reruns only this fragment while busy)
    if busy and still_busy[ImageStatus.PENDING] + still_busy[ImageStatus.LABELLING] == 0:
        # Labelling finished: a full rerun refreshes counts and suggestions and stops the timer.
        core.data_changed()
        st.rerun()
    if page.total == 0:
        if found is not None:
            _nothing_found(found)
        elif filtering:
            st.info("No images match these filters.", icon=":material/filter_alt_off:")
        else:
            st.info("No images yet — upload some.", icon=":material/photo_library:")
            st.page_link(Page.UPLOAD, label="Upload photos", icon=":material/upload:")
        return
    with st.container(key=GRID_KEY):
        _cards(page, more=more, why=why, best=best, flagged=flagged, link_params=shown.to_params())
    if found is not None:
        _less_similar(found)


def _cards(
    page: image_q.Page,
    *,
    more: str,
    why: dict[str, list[str]],
    best: dict[str, tuple[str, float]],
    flagged: set[str],
    link_params: dict[str, str],
) -> None:
    plural = "s" if page.total != 1 else ""
    st.caption(f"{page.total:,}{more} image{plural}" + (" match" if filtering else ""))
    st.html(SCROLL_UP_JS.format(page=page.page, grid=GRID_KEY), unsafe_allow_javascript=True)
    thumbs = core.thumbnails(page.items, square=True)  # the stored ones, read with one query
    # One st.columns per row: a narrow screen stacks a row's columns, so the order stays
    # newest first (one st.columns for the whole grid would stack it column by column).
    for start in range(0, len(page.items), COLUMNS):
        row = page.items[start : start + COLUMNS]
        for col, img in zip(st.columns(COLUMNS), row, strict=False):
            with col.container(border=True, key=f"{CARD_KEY}{img.id}", gap="xxsmall"):
                thumb = thumbs[img.id]
                hidden = img.id in flagged and img.id not in st.session_state.get(REVEALED, set())
                if thumb and hidden:
                    with st.container(key=f"{BLUR_KEY}{img.id}"):
                        st.image(thumb, width="stretch")
                    st.button(
                        "Show",
                        key=f"{REVEAL_KEY}{img.id}",
                        icon=":material/visibility:",
                        on_click=_reveal,
                        args=(img.id,),
                        help="Flagged Explicit by the moderation model, so it is blurred. Show it here.",
                    )
                elif thumb:
                    st.image(thumb, width="stretch")
                else:
                    st.caption(":material/broken_image: preview unavailable")
                core.status_badge(img.status)  # on the photo's corner (PAGE_CSS)
                with st.container(horizontal=True, gap="xxsmall", vertical_alignment="center"):
                    st.markdown(f"**{core.md(img.original_name)}**")
                    # The link covers the whole card (PAGE_CSS): clicking the photo opens it.
                    # Its word is for screen readers; the eye sees its icon.
                    st.page_link(
                        Page.IMAGE,
                        label="Open",
                        icon=":material/open_in_full:",
                        query_params={"image": img.id, **link_params},
                        help=f"Open {img.original_name}",
                        width="content",
                    )
                if why.get(img.id):
                    st.caption(":material/search: " + core.md("; ".join(why[img.id][:2])))
                if img.id in best:
                    name, conf = best[img.id]
                    st.caption(f"{core.md(name)} · {conf:.0f}%")
                if img.status == ImageStatus.FAILED and img.failure_reason:
                    st.caption(core.md(img.failure_reason))
                if owners:
                    st.caption(f":material/person: {core.md(owners.get(img.owner_id, '?'))}")
    if page.pages > 1:
        key = gs.pager_key(st.session_state)  # a new one starts at the page shown (gs.set_page)
        st.pagination(page.pages, default=page.page, key=key, on_change=_page_chosen, args=(key,))


def _nothing_found(found: SearchResult) -> None:
    """Say so, name the words that stand for no label, and offer the nearest labels."""
    if found.notice:  # e.g. similar: with a partial or unknown id
        st.warning(core.md(found.notice), icon=":material/search_off:")
        return
    if found.less_similar:
        st.info(
            f"No photo of yours is much like it (similarity {SIMILAR_CUTOFF:.2f} or more; "
            "1 is the same photo).",
            icon=":material/search_off:",
        )
        _less_similar(found)
        return
    words = ", ".join(f"“{core.md(w)}”" for w in dict.fromkeys(found.unmatched))
    st.info(
        f"No photos match “{core.md(str(found.query))}”."
        + (f" No label is called or related to {words}." if words else ""),
        icon=":material/search_off:",
    )
    if found.suggestions:
        st.caption("Nearest labels you have:")
        cols = st.columns(len(found.suggestions))
        for col, name in zip(cols, found.suggestions, strict=True):
            col.button(name, key=f"suggest_{name}", on_click=_use_suggestion, args=(name,))


if busy:
    st.caption(f":material/autorenew: Labelling in progress — refreshing every {REFRESH_SECONDS} s.")
    st.fragment(_grid, run_every=REFRESH_SECONDS)()
else:
    _grid()
