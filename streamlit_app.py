"""gender-lens: the dashboard's router. Pages live in pages/; what they share lives in ui.py."""

import streamlit as st

import ui

st.set_page_config(page_title="gender-lens", page_icon=":material/person_search:", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/predict.py", title="Predict", icon=":material/person_search:", default=True),
        st.Page("pages/categories.py", title="Categories", icon=":material/category:", url_path="categories"),
        st.Page("pages/model.py", title="Model", icon=":material/model_training:", url_path="model"),
        st.Page("pages/monitoring.py", title="Monitoring", icon=":material/monitoring:", url_path="monitoring"),
    ]
)
ui.sidebar()
navigation.run()
