"""The Streamlit dashboard. ``streamlit_app.py`` routes; ``pages/`` hold UI only; ``core`` wires services."""
