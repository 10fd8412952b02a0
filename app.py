"""The Claude playground on Orq's AI Router: navigation and the shared sidebar."""

import streamlit as st

from playground_ui.session import page_context

st.set_page_config(page_title="Claude playground · Orq AI Router", page_icon=":material/token:", layout="wide")

PAGES = [
    st.Page("app_pages/chat.py", title="Chat", icon=":material/chat:", default=True),
    st.Page("app_pages/vision.py", title="Vision / PDF", icon=":material/image:"),
    st.Page("app_pages/tools.py", title="Tools", icon=":material/build:"),
    st.Page("app_pages/caching_lab.py", title="Caching Lab", icon=":material/science:"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("app_pages/batch.py", title="Batch", icon=":material/table_rows:"),
    st.Page("app_pages/notebook.py", title="Notebook", icon=":material/menu_book:"),
    st.Page("app_pages/history.py", title="History", icon=":material/history:"),
]

page = st.navigation(PAGES)
st.session_state["ctx"] = page_context()
page.run()
