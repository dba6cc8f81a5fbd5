"""The Streamlit dashboard. ``streamlit_app.py`` routes; ``navigation`` registers every page;
``app_pages/`` hold UI only; ``core`` wires services (drawing is ``labelkit.render``).

The pages are not in ``pages/``: Streamlit auto-discovers that folder and shows its
own legacy sidebar of every file in it before ``st.navigation`` runs.
"""
