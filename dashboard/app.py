"""Entry point of the dashboard (``streamlit run app.py``): the navigation and nothing else.

Each page is a file in ``views/`` with one ``render()`` function; the queries live in
``data.py``, the figures in ``charts.py``. The folder is not called ``pages/``: Streamlit would
take a ``pages/`` folder beside the main script for its older one-file-per-page app and serve
each file on its own, without this navigation.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from kswarm.dashboard import layout

PAGES = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="kswarm", page_icon=":material/hub:", layout="wide")
navigation = st.navigation(
    [
        st.Page(
            PAGES / "overview.py",
            title="Overview",
            icon=":material/dashboard:",
            url_path="overview",
            default=True,
        ),
        st.Page(PAGES / "job.py", title="Job", icon=":material/timeline:", url_path="job"),
        st.Page(PAGES / "pools.py", title="Pools", icon=":material/memory:", url_path="pools"),
        st.Page(
            PAGES / "toolservers.py",
            title="Tool servers",
            icon=":material/build:",
            url_path="toolservers",
        ),
        st.Page(
            PAGES / "rollouts.py",
            title="Rollouts",
            icon=":material/model_training:",
            url_path="rollouts",
        ),
    ]
)
layout.sidebar()
navigation.run()
