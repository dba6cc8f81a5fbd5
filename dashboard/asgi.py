"""What ``make run`` (``python -m labelkit.run``) and the EC2 unit serve: the Streamlit app
(``streamlit_app.py``) plus the HTTP routes and middleware of :mod:`dashboard.web`.

``streamlit run dashboard/asgi.py`` finds ``app`` below and serves it with Streamlit's own
uvicorn, with every ``--server.*`` option as usual. Serving ``streamlit_app.py`` directly still
works, but then sign-in lasts only as long as the tab, ``/_stcore/metrics`` is open and no
security headers are sent (the dashboard logs a warning).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from dashboard import web

app = st.App(
    Path(__file__).with_name("streamlit_app.py"),
    routes=web.ROUTES,
    middleware=[Middleware(web.LabelkitHttp)],
)
