"""The dashboard's pages: each module has one ``render()``, run by ``st.navigation``."""
