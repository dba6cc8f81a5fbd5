"""Compare two labellers (compare mode: ``LABELKIT_LABELER=local,rekognition``).

Each image then carries one set of labels per model version. This page shows how
far two versions agree (per label and overall, on the images both labelled) and
what each costs per 1,000 images. The matching rule and the agreement maths are
``labelkit.compare``; the rows come from ``labelkit.db.queries.stats``.
"""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboard import core
from labelkit import analytics, compare

user = core.require_user()
viewer = user.viewer
price = core.settings().rekognition_price_per_1000

st.title("Compare labellers")
with core.db() as s:
    costs = analytics.model_version_costs(session=s, viewer=viewer, price_per_1000=price)

versions = list(costs["model_version"])
if len(versions) < 2:
    st.info(
        "Only one labeller has labelled your images so far. Configure two "
        "(LABELKIT_LABELER=local,rekognition) to compare them here.",
        icon=":material/compare:",
    )
    st.stop()


def _default(kind: str, fallback: int) -> int:
    kinds = [analytics.labeller_kind(v) for v in versions]
    return kinds.index(kind) if kind in kinds else fallback


c1, c2 = st.columns(2)
version_a = c1.selectbox("Labeller A", versions, index=_default("local", 0), key="compare_a")
others = [v for v in versions if v != version_a]
b_default = next(
    (i for i, v in enumerate(others) if analytics.labeller_kind(v) != analytics.labeller_kind(version_a)), 0
)
version_b = c2.selectbox("Labeller B", others, index=b_default, key="compare_b")

with core.db() as s:
    agreement = compare.labeller_agreement(session=s, viewer=viewer, version_a=version_a, version_b=version_b)
table = analytics.agreement_frame(agreement)
cost_a = float(costs.loc[costs["model_version"] == version_a, "cost_per_1000"].iloc[0])
cost_b = float(costs.loc[costs["model_version"] == version_b, "cost_per_1000"].iloc[0])

m1, m2, m3, m4 = st.columns(4)
m1.metric("Images labelled by both", agreement.images, border=True)
m2.metric(
    "Overall agreement",
    f"{agreement.mean_jaccard:.0%}" if agreement.mean_jaccard is not None else "—",
    help="Mean over images of |labels both agree on| ÷ |labels either found|.",
    border=True,
)
m3.metric("A: cost per 1,000 images", f"${cost_a:,.2f}", border=True)
m4.metric("B: cost per 1,000 images", f"${cost_b:,.2f}", border=True)
st.caption(
    "A label counts as agreed on an image when the other labeller has it as a label, "
    "a parent or an alias (local “Cat” matches Rekognition “Kitten” whose parents include “Cat”). "
    "API cost: Rekognition at the configured price "
    f"(${price:,.2f} per 1,000 images); the local model has no API cost, it uses the worker's CPU."
)

if agreement.images == 0:
    st.info("No image has been labelled by both of these yet.", icon=":material/compare:")
else:
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader("Agreement per label")
        top = table.head(25)
        bars = (
            alt.Chart(top)
            .mark_bar()
            .encode(
                x=alt.X("jaccard:Q", title="Agreement (Jaccard)", scale=alt.Scale(domain=[0, 1])),
                y=alt.Y("label:N", sort=list(top["label"]), title=None),
                tooltip=["label", "a_images", "b_images", "both", alt.Tooltip("jaccard:Q", format=".0%")],
            )
            .properties(height=max(200, 22 * len(top)))
        )
        st.altair_chart(bars, width="stretch")
    with right:
        st.subheader("Agreement per image")
        hist = (
            alt.Chart(analytics.agreement_histogram(agreement))
            .mark_bar()
            .encode(
                x=alt.X("bin_start:Q", bin="binned", title="Jaccard", scale=alt.Scale(domain=[0, 1])),
                x2="bin_end:Q",
                y=alt.Y("images:Q", title="Images"),
            )
            .properties(height=260)
        )
        st.altair_chart(hist, width="stretch")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "label": st.column_config.TextColumn("Label"),
            "a_images": st.column_config.NumberColumn("Images (A)"),
            "b_images": st.column_config.NumberColumn("Images (B)"),
            "both": st.column_config.NumberColumn("Agreed"),
            "either": st.column_config.NumberColumn("Either"),
            "jaccard": st.column_config.ProgressColumn(
                "Agreement", min_value=0, max_value=1, format="percent"
            ),
        },
        key="compare_table",
    )

st.subheader("Labellers and cost")
st.dataframe(
    costs,
    hide_index=True,
    width="stretch",
    column_config={
        "model_version": st.column_config.TextColumn("Model version"),
        "labeller": st.column_config.TextColumn("Labeller"),
        "images": st.column_config.NumberColumn("Images"),
        "labels": st.column_config.NumberColumn("Labels"),
        "cost_per_1000": st.column_config.NumberColumn("API cost per 1,000 images", format="$%.2f"),
        "cost_so_far": st.column_config.NumberColumn("Estimated API cost so far", format="$%.4f"),
    },
    key="compare_costs",
)
