"""Placeholder until the page lands."""

import streamlit as st

st.title("tools")
st.info("This page is being built.")
