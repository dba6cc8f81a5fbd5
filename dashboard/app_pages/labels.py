"""Labels across the viewer's images: top labels, confidence, activity, categories,
co-occurrence, and a table of every label with review precision (downloadable as CSV).
Clicking a bar (or choosing a label below the table) opens the gallery filtered by it."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboard import core
from dashboard.navigation import Page
from labelkit import analytics, learning, taught, thresholds
from labelkit.db.models import ALL_OWNERS
from labelkit.db.queries import learning as learning_q

BAR_HEIGHT = 24  # px per bar: room for every label name
FEW_BINS = 3  # the over-time chart draws bars, not a line, up to this many bins

user = core.require_user()
viewer = user.viewer


st.title("Labels")
core.show_flash()
top_n = st.sidebar.slider("Top labels shown", 5, 40, 15, step=5, key="labels_top")
data = core.label_data(viewer, top_n)
table = data["labels"]

if table.empty:
    st.info(
        "No labels yet — upload some images and they will be labelled automatically.", icon=":material/label:"
    )
    st.page_link(Page.UPLOAD, label="Upload photos", icon=":material/upload:")
    st.stop()

reviewed = int(table["confirmed"].sum() + table["rejected"].sum())
statuses = data["statuses"].set_index("status")["images"]
most = table.loc[table["images"].idxmax()]
m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("Labelled images", int(statuses.get("labelled", 0)), border=True)
m2.metric("Distinct labels", len(table), border=True)
m3.metric(
    "Most common label",
    core.md(most["label"]),  # a label's name is the user's text: never markup
    help=f"On {int(most['images'])} labelled images (as a label or as a parent of one).",
    border=True,
)
m4.metric(
    "Mean confidence",
    f"{table['mean_confidence'].mean():.1f}%",
    help="The mean of each label's mean model confidence (labels only people gave have none).",
    border=True,
)
m5.metric(
    "Review precision",
    f"{table['confirmed'].sum() / reviewed:.0%}" if reviewed else "—",
    help="Share of reviewed model labels that people confirmed.",
    border=True,
)

top = table.head(top_n)
left, right = st.columns(2, gap="large")
with left:
    st.subheader("Images per label")
    st.caption("Click a bar to open those images in the gallery.")
    pick = alt.selection_point(fields=["label"], name="pick")
    bars = (
        alt.Chart(top)
        .mark_bar()
        .encode(
            x=alt.X("images:Q", title="Images", axis=alt.Axis(format="d", tickMinStep=1)),
            # Every bar keeps its name: Vega-Lite otherwise drops labels it thinks overlap
            # (every other one at 15 bars) and cuts long ones at 180 px.
            y=alt.Y(
                "label:N",
                sort="-x",
                title=None,
                axis=alt.Axis(labelOverlap=False, labelLimit=260, labelPadding=4),
                scale=alt.Scale(paddingInner=0.15),
            ),
            color=alt.condition(pick, alt.value("#4f46e5"), alt.value("#c7d2fe")),
            tooltip=["label", "images", alt.Tooltip("mean_confidence:Q", title="mean confidence")],
        )
        .add_params(pick)
        .properties(height=max(200, BAR_HEIGHT * len(top)))
    )
    event = st.altair_chart(bars, on_select="rerun", key="label_bars", width="stretch")
    picked = (event.selection.get("pick") or []) if event else []
    if picked and isinstance(picked[0], dict) and picked[0].get("label"):
        st.switch_page(Page.GALLERY, query_params={"label": str(picked[0]["label"])})

with right:
    st.subheader("Confidence")
    hist = (
        alt.Chart(data["histogram"])
        .mark_bar()
        .encode(
            x=alt.X("bin_start:Q", bin="binned", title="Confidence (%)", scale=alt.Scale(domain=[0, 100])),
            x2="bin_end:Q",
            y=alt.Y("labels:Q", title="Labels"),
            tooltip=["bin_start", "bin_end", "labels"],
        )
        .properties(height=260)
    )
    st.altair_chart(hist, width="stretch")

left, right = st.columns(2, gap="large")
with left:
    st.subheader("Uploads and labels over time")
    activity, unit = data["activity"], data["activity_bin"]
    st.caption(f"Per {unit}, from your first upload to the latest activity (UTC).")
    time_format = {"hour": "%b %d %H:00", "day": "%b %d", "week": "week of %b %d"}[unit]
    few = activity["time"].nunique() <= FEW_BINS  # a line through one or two points says little
    base = alt.Chart(activity)
    y = alt.Y("images:Q", title="Images", axis=alt.Axis(format="d", tickMinStep=1))
    tooltip = [alt.Tooltip("time:T", title=unit, format=time_format), "series", "images"]
    line = (
        base.mark_bar().encode(
            x=alt.X(
                "time:O",
                title=None,
                timeUnit="yearmonthdatehours" if unit == "hour" else "yearmonthdate",
                axis=alt.Axis(labelAngle=0),
            ),
            xOffset="series:N",
            y=y,
            color=alt.Color("series:N", title=None),
            tooltip=tooltip,
        )
        if few
        else base.mark_line(point=True).encode(
            x=alt.X("time:T", title=None, axis=alt.Axis(format=time_format, labelAngle=0)),
            y=y,
            color=alt.Color("series:N", title=None),
            tooltip=tooltip,
        )
    ).properties(height=260)
    st.altair_chart(line, width="stretch")
with right:
    st.subheader("Categories")
    cats = data["categories"]
    if cats.empty:
        st.caption("No categories yet.")
    else:
        arc = (
            alt.Chart(cats)
            .mark_arc(innerRadius=50)
            .encode(
                theta="images:Q",
                color=alt.Color("category:N", title=None),
                tooltip=["category", "images"],
            )
            .properties(height=260)
        )
        st.altair_chart(arc, width="stretch")

st.subheader("Labels that appear together")
st.caption(f"Counted over the latest {analytics.COOCCURRENCE_LATEST:,} images you can see.")
pairs = data["pairs"]
if pairs.empty:
    st.caption("Not enough labels yet.")
else:
    order = list(top["label"])
    heat = (
        alt.Chart(pairs)
        .mark_rect()
        .encode(
            x=alt.X("label_a:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False)),
            y=alt.Y("label_b:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False)),
            color=alt.Color(
                "images:Q",
                scale=alt.Scale(scheme="purples"),
                title="Images",
                legend=alt.Legend(format="d", tickMinStep=1),
            ),
            tooltip=["label_a", "label_b", "images"],
        )
        .properties(height=max(240, 24 * len(order)))
    )
    st.altair_chart(heat, width="stretch")

st.subheader("All labels")
shown = table.assign(precision=table["precision"].map(analytics.precision_text))  # the CSV keeps numbers
st.dataframe(
    shown,
    hide_index=True,
    width="stretch",
    column_config={
        "label": st.column_config.TextColumn("Label"),
        "images": st.column_config.NumberColumn("Images"),
        "mean_confidence": st.column_config.ProgressColumn(
            "Mean confidence", min_value=0, max_value=100, format="%.1f%%"
        ),
        "confirmed": st.column_config.NumberColumn("Confirmed"),
        "rejected": st.column_config.NumberColumn("Rejected"),
        "precision": st.column_config.TextColumn(
            "Review precision", help="Confirmed ÷ reviewed by people; “no reviews yet” until someone reviews."
        ),
    },
    key="labels_table",
)
c1, c2, c3 = st.columns([2, 1, 2], vertical_alignment="bottom")
chosen = c1.selectbox("Open a label in the gallery", list(table["label"]), index=None, key="labels_open")
if c2.button("Open in gallery", key="labels_open_btn", icon=":material/photo_library:", disabled=not chosen):
    st.switch_page(Page.GALLERY, query_params={"label": str(chosen)})
with c3:
    core.download_button(
        "Download label summary (CSV)",
        data=analytics.to_csv(table),
        file_name="labelkit-label-summary.csv",
        mime="text/csv",
        icon=":material/download:",
        key="labels_csv",
        on_click="ignore",
    )

st.subheader("Taught labels")
st.caption(
    f"A label you add or confirm on {taught.MIN_PHOTOS} or more photos is learned from them and suggested "
    "on your other photos (marked *suggested*; the Review page shows them first). Rejecting a "
    "suggestion teaches it too. This happens on its own a few seconds after your labels change."
)
with core.db() as s:
    taught_rows = learning_q.taught_labels(session=s, owner_id=viewer.user_id)
for row in taught_rows:
    icon = ":material/school:" if row.status == learning_q.ACTIVE else ":material/block:"
    st.markdown(f"{icon} {core.md(learning.describe(row))}")
if not taught_rows:
    st.caption(f"Nothing taught yet: no label is on {taught.MIN_PHOTOS} or more of your photos by your hand.")
if st.button("Learn from my labels now", key="labels_learn", icon=":material/model_training:"):
    with st.spinner("Learning from your labels…"):
        learned = learning.learn(core.services().engine, viewer.user_id)
    core.data_changed()
    core.flash(f"Learned {len(learned)} taught label{'s' if len(learned) != 1 else ''} from your labels.")
    st.rerun()

st.subheader("Thresholds from your reviews")
target = core.settings().review_target_precision
everyone = viewer.is_admin and st.toggle(
    "Everyone's reviews and photos (a minimum set here applies to everyone)", key="thresholds_everyone"
)
st.caption(
    "Per label: how often the labels you reviewed were right (with a 95% interval), and the lowest "
    f"minimum confidence that keeps at least {target:.0%} of them right. Applying it hides that label "
    "below the minimum everywhere (search, filters, counts, cards); labels people gave are never hidden, "
    "and clearing the minimum brings the rest back."
)
label_reviews = thresholds.from_reviews(
    core.services().engine, owner_id=None if everyone else viewer.user_id, target=target
)
if not label_reviews:
    st.caption(
        "No reviews yet: confirm or reject labels on the Review page to see how precise each label is."
    )
else:
    st.dataframe(
        [
            {
                "label": r.name,
                "reviews": r.reviewed,
                "precision": r.interval_text(),
                "minimum now": r.floor,
                "suggested minimum": r.suggested,
                "photos now": r.images_now,
                "photos after": r.images_after,
                "note": r.note,
            }
            for r in label_reviews
        ],
        hide_index=True,
        width="stretch",
        column_config={
            "minimum now": st.column_config.NumberColumn(format="%.1f%%"),
            "suggested minimum": st.column_config.NumberColumn(format="%.1f%%"),
        },
        key="thresholds_table",
    )
    by_name = {r.name: r for r in label_reviews}
    t1, t2, t3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    settable = [r.name for r in label_reviews if r.suggested is not None or r.floor is not None]
    chosen_name = t1.selectbox("Label", settable, index=None, key="thresholds_label")
    chosen = by_name.get(chosen_name or "")
    whose = ALL_OWNERS if everyone else viewer.user_id
    if t2.button(
        "Apply the suggested minimum",
        key="thresholds_apply",
        icon=":material/tune:",
        disabled=chosen is None or chosen.suggested is None,
    ):
        assert chosen is not None and chosen.suggested is not None
        with st.spinner("Applying…"):
            thresholds.apply(
                core.services().engine, owner_id=whose, name=chosen.name, min_confidence=chosen.suggested,
                set_by=viewer.user_id,
            )  # fmt: skip
        core.data_changed()
        core.flash(f"{chosen.name} now needs {chosen.suggested:.1f}% or more.")
        st.rerun()
    if t3.button(
        "Clear the minimum", key="thresholds_clear", icon=":material/restart_alt:",
        disabled=chosen is None or chosen.floor is None,
    ):  # fmt: skip
        assert chosen is not None
        with st.spinner("Clearing…"):
            thresholds.apply(
                core.services().engine,
                owner_id=whose,
                name=chosen.name,
                min_confidence=None,
                set_by=viewer.user_id,
            )
        core.data_changed()
        core.flash(f"{chosen.name} has no minimum any more.")
        st.rerun()
