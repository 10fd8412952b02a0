"""Placeholder until the page lands."""

import streamlit as st

st.title("caching_lab")
st.info("This page is being built.")
