"""gender-lens: one server for the dashboard and the original service's HTTP routes.

`streamlit run streamlit_app.py` finds the `app` below and serves it: the HTTP routes of
gender/api.py (/predict, /count, /api, /metrics) in front of the dashboard, on one port. The same
file is the dashboard's router: Streamlit runs it as `__main__` for every page view, where it
checks who may see data and hands over to the pages (pages/; what they share lives in ui.py).
"""

import streamlit as st

if __name__ != "__main__":  # imported by the server (`streamlit run`, or uvicorn): build it once
    from starlette.middleware import Middleware
    from streamlit.runtime.pages_manager import PagesManager

    from gender.api import ApiFirst

    app = st.App("streamlit_app.py", middleware=[Middleware(ApiFirst)])
    # The pages are routed by st.navigation below. Streamlit ran a fresh server's first session in
    # its pages/-folder mode until some run had called it: that session's sidebar listed the
    # folder's files for a moment, behind the login too.
    PagesManager.uses_pages_directory = False

else:  # a page view
    import ui
    from gender.access import load_access
    from gender.errors import GenderError

    ABOUT = (
        "**gender-lens** predicts a shop visitor's gender from one browsing session and says why. "
        "Light, Dark or System (your device's setting) in this menu sets the dashboard's theme, charts included."
    )

    # An emoji favicon is drawn in the page itself; a material one is fetched from Google's fonts,
    # which a shop's offline network never reaches. The About item is what shows the app menu
    # (⋮) under toolbarMode "minimal" (.streamlit/config.toml), and with it the theme switch.
    st.set_page_config(page_title="gender-lens", page_icon="🔎", layout="wide", menu_items={"About": ABOUT})

    def pages() -> list:
        return [
            st.Page("pages/predict.py", title="Predict", icon=":material/person_search:", default=True),
            st.Page("pages/find.py", title="Find", icon=":material/filter_alt:", url_path="find"),
            st.Page("pages/categories.py", title="Categories", icon=":material/category:", url_path="categories"),
            st.Page("pages/model.py", title="Model", icon=":material/model_training:", url_path="model"),
            st.Page("pages/population.py", title="Population", icon=":material/groups:", url_path="population"),
            st.Page("pages/monitoring.py", title="Monitoring", icon=":material/monitoring:", url_path="monitoring"),
        ]

    def refuse() -> None:
        """End the run here, showing no page: without a navigation this run, Streamlit would list
        the pages/ folder's files in the sidebar (a deep link to /find showed "streamlit app", "find"…)."""
        st.navigation(pages(), position="hidden")
        st.stop()

    def login_configured() -> bool:
        try:
            return "auth" in st.secrets
        except (FileNotFoundError, KeyError, ValueError):  # no secrets file, or one that does not parse
            return False

    def access_gate() -> None:
        """Stop here, showing no data, unless the deployment is open or the visitor is allowed."""
        try:
            access = load_access()
        except GenderError as exc:
            st.error(f"The access settings cannot be read, so no data is shown: {exc}", icon=":material/lock:")
            refuse()
        if not access.restricted:
            st.sidebar.caption(
                ":material/lock_open: Open demo: anyone who can reach this server sees every session. "
                "Name who is allowed in `.streamlit/secrets.toml` to require a login (README, Access)."
            )
            return
        if not login_configured():
            st.error(
                "This deployment names who is allowed, but no login is configured (`[auth]` in "
                "`.streamlit/secrets.toml`), so no data is shown.",
                icon=":material/lock:",
            )
            refuse()
        if not st.user.get("is_logged_in"):
            st.title("gender-lens")
            st.markdown("This dashboard shows visitors' browsing logs; please log in to see it.")
            st.button("Log in", on_click=st.login, type="primary", icon=":material/login:")
            refuse()
        if not access.allows_user(st.user.get("email")) or st.user.get("email_verified") is False:
            st.title("gender-lens")
            st.warning(
                f"Sorry, {ui.shown(str(st.user.get('email') or 'this account'), limit=80)} is not on this "
                "dashboard's list of people allowed to see it. If you should be, ask whoever runs it to add you.",
                icon=":material/block:",
            )
            st.button("Log out", on_click=st.logout)
            refuse()
        with st.sidebar:
            st.caption(f"Logged in as {ui.shown(str(st.user.email), limit=60)}")
            st.button("Log out", on_click=st.logout, key="logout")

    access_gate()
    navigation = st.navigation(pages())
    ui.sidebar()
    navigation.run()
