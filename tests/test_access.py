"""Who may see data: the dashboard's login and allowlist, the API's bearer tokens.

The dashboard through AppTest (`at.user` stands for the logged-in person) and once end to end in
Chromium, logging in at a local OIDC provider (oidc-provider-mock, started here on loopback: the
one thing stood in for). The API with no token, a wrong one and a right one, through TestClient
and through a real `streamlit run` server whose log must never hold a token.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import httpx
import pytest
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest

from gender import access as access_module
from gender import api, config
from gender.access import Access, load_access, token_hash
from gender.errors import GenderError
from tests import live
from tests.conftest import PROJECT

TIMEOUT = 120
TOKEN, OTHER_TOKEN = "right-token-" + "k" * 30, "wrong-token-" + "w" * 30
AUTH = {  # what st.login needs in [auth]; the provider is never reached in AppTest
    "redirect_uri": "http://127.0.0.1:9/oauth2callback",
    "cookie_secret": "a-cookie-secret-for-the-tests-only",
    "client_id": "gender-lens",
    "client_secret": "client-secret",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}


@pytest.fixture
def open_settings(trained_demo, monkeypatch):
    url, model_dir = trained_demo
    monkeypatch.setenv("GENDER_DB_URL", url)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))
    for name in ("GENDER_ALLOWED_USERS", "GENDER_API_TOKENS_SHA256", "GENDER_METRICS_PUBLIC", "GENDER_HEALTH_PUBLIC"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# -- the settings -----------------------------------------------------------------------------------


def test_allowlist_by_address_and_by_domain():
    access = Access(allowed_users=("ana@shop.example", "@team.example"))
    assert access.restricted
    assert access.allows_user("ana@shop.example") and access.allows_user(" Ana@Shop.Example ")
    assert access.allows_user("zoe@team.example") and access.allows_user("ZOE@TEAM.EXAMPLE")
    for email in ("bob@shop.example", "ana@shop.example.evil", "zoe@sub.team.example", "team.example", "", None, 3):
        assert not access.allows_user(email), email
    assert not Access().restricted


def test_tokens_are_kept_as_hashes_and_compared_whole():
    access = Access(token_hashes=(bytes.fromhex(token_hash(TOKEN)),))
    assert access.allows_token(TOKEN)
    for token in (OTHER_TOKEN, TOKEN[:-1], TOKEN + "x", "", None, TOKEN.upper(), token_hash(TOKEN)):
        assert not access.allows_token(token)


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("GENDER_ALLOWED_USERS", "Ana@Shop.Example, @team.example")
    monkeypatch.setenv("GENDER_API_TOKENS_SHA256", f"{token_hash(TOKEN)},{token_hash(OTHER_TOKEN).upper()}")
    monkeypatch.setenv("GENDER_METRICS_PUBLIC", "0")
    access = load_access()
    assert access.allowed_users == ("ana@shop.example", "@team.example")
    assert access.allows_token(TOKEN) and access.allows_token(OTHER_TOKEN)
    assert not access.metrics_public and access.health_public

    monkeypatch.setenv("GENDER_API_TOKENS_SHA256", TOKEN)  # the token where its hash belongs
    with pytest.raises(GenderError, match=r"^GENDER_API_TOKENS_SHA256 holds something") as caught:
        load_access()  # named where it was set, as the flags below are: not the secrets file's key
    assert TOKEN not in str(caught.value)
    monkeypatch.setenv("GENDER_API_TOKENS_SHA256", "")
    monkeypatch.setenv("GENDER_ALLOWED_USERS", "just-a-name")
    with pytest.raises(GenderError, match=r"^GENDER_ALLOWED_USERS: 'just-a-name' is neither"):
        load_access()
    monkeypatch.setenv("GENDER_ALLOWED_USERS", "")
    monkeypatch.setattr(access_module, "_secrets", lambda: {"allowed_users": ["x"], "api_token_sha256": [TOKEN]})
    with pytest.raises(GenderError, match=r"^\[gender\] allowed_users: 'x' is neither"):
        load_access()
    monkeypatch.setattr(access_module, "_secrets", lambda: {"api_token_sha256": [TOKEN]})
    with pytest.raises(GenderError, match=r"^\[gender\] api_token_sha256 holds something"):
        load_access()
    monkeypatch.setattr(access_module, "_secrets", lambda: {})
    monkeypatch.setenv("GENDER_ALLOWED_USERS", "")
    monkeypatch.setenv("GENDER_HEALTH_PUBLIC", "maybe")  # named as README documents it, with what it takes
    with pytest.raises(
        GenderError, match=r"^GENDER_HEALTH_PUBLIC is 'maybe': expected 1 or 0 \(also yes/no, on/off\)$"
    ):
        load_access()


@pytest.mark.parametrize(
    "toml, message",
    [
        ("gender = 5", "gender must be a table ([gender] and its settings under it)"),
        ("[gender]\ntreatment_share = [1]", "treatment_share in {file} must be a number, not [1]"),
        ("[gender]\ntreatment_share = true", "treatment_share in {file} must be a number, not True"),
        ('[gender]\ntreatment_share = "half"', "treatment_share in {file} must be a number, not 'half'"),
        (
            "[gender]\ntreatment_share = 2",
            "the treatment share (treatment_share in {file}) must be a number from 0 to 1",
        ),
        ("[gender]\ndb_url = 5", "db_url in {file} must be text in quotes, not 5"),
        ("[gender]\nmodel_dir = ['models']", "model_dir in {file} must be text in quotes, not ['models']"),
    ],
)
def test_a_setting_of_the_wrong_kind_in_the_secrets_file_is_one_line(tmp_path, monkeypatch, toml, message):
    """Not a TypeError from wherever the value is first used, and named where it was set."""
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(toml + "\n")
    monkeypatch.delenv("GENDER_TREATMENT_SHARE", raising=False)
    monkeypatch.setattr(config, "SECRETS_FILE", secrets)
    read = config._secrets
    monkeypatch.setattr(config, "_secrets", lambda: read(secrets))
    with pytest.raises(GenderError) as caught:
        config.load_settings()
    assert str(caught.value).endswith(message.format(file=secrets))


def test_the_cli_makes_a_token_and_prints_its_hash():
    made = subprocess.run(
        [sys.executable, "-m", "gender", "api-token"], capture_output=True, text=True, cwd=PROJECT, timeout=120
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert len(token) >= 40 and token not in made.stderr
    assert hashlib.sha256(token.encode()).hexdigest() in made.stderr


# -- the API --------------------------------------------------------------------------------------


def get_all(client, headers: dict) -> list:
    return [
        client.get("/predict/u10001", headers=headers),
        client.get("/count/u10001/A00001", headers=headers),
        client.post("/api/predict", json=["u10001"], headers=headers),
    ]


def test_the_api_with_no_token_a_wrong_one_and_a_right_one(open_settings):
    open_settings.setenv("GENDER_API_TOKENS_SHA256", token_hash(TOKEN))
    with TestClient(api.create_app()) as client:
        for headers in (
            {},
            {"Authorization": f"Bearer {OTHER_TOKEN}"},
            {"Authorization": "Bearer "},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
            {"Authorization": f"Bearer {TOKEN[:-1]}"},
        ):
            for response in get_all(client, headers):
                assert response.status_code == 401, headers
                assert response.json() == {"ERROR": response.json()["ERROR"], "STATUS": 401}
                assert response.headers["www-authenticate"] == "Bearer"
                assert "u10001" not in response.text and TOKEN not in response.text
        for response in get_all(client, {"Authorization": f"Bearer {TOKEN}"}):
            assert response.status_code == 200
        assert client.get("/predict/u10001", headers={"authorization": f"bearer {TOKEN}"}).status_code == 200
        # /metrics and the health route are open unless the deployment closes them
        assert client.get("/metrics").status_code == 200 and client.get("/api/health").status_code == 200
        assert TOKEN not in client.get("/metrics").text


def test_metrics_and_health_closed_by_setting(open_settings):
    open_settings.setenv("GENDER_API_TOKENS_SHA256", token_hash(TOKEN))
    open_settings.setenv("GENDER_METRICS_PUBLIC", "false")
    open_settings.setenv("GENDER_HEALTH_PUBLIC", "0")
    with TestClient(api.create_app()) as client:
        for path in ("/metrics", "/api/health"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_the_public_health_route_names_no_server_or_folder_without_a_token(open_settings):
    """A load balancer may ask without a token; the reasons name the database and the model folder."""
    open_settings.setenv("GENDER_API_TOKENS_SHA256", token_hash(TOKEN))
    open_settings.setenv("GENDER_DB_URL", f"mysql+pymysql://gender:pw@127.0.0.1:{live.free_port()}/shop_ftp")
    with TestClient(api.create_app()) as client:
        public = client.get("/api/health")
        assert public.status_code == 503 and public.json()["STATUS"] == "unavailable"
        assert "127.0.0.1" not in public.text and "shop_ftp" not in public.text and "given with a token" in public.text
        detailed = client.get("/api/health", headers={"Authorization": f"Bearer {TOKEN}"})
        assert detailed.status_code == 503 and "shop_ftp" in detailed.json()["DATABASE"]


def test_naming_people_for_the_dashboard_closes_the_api_too(open_settings):
    open_settings.setenv("GENDER_ALLOWED_USERS", "ana@shop.example")
    with TestClient(api.create_app()) as client:
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
            assert all(response.status_code == 401 for response in get_all(client, headers))


def test_an_open_demo_answers_everyone(open_settings):
    with TestClient(api.create_app()) as client:
        assert all(response.status_code == 200 for response in get_all(client, {}))


def test_tokens_through_a_real_server_and_never_in_its_log(trained_demo, tmp_path):
    url, model_dir = trained_demo
    env = {"GENDER_DB_URL": url, "GENDER_MODEL_DIR": str(model_dir), "GENDER_API_TOKENS_SHA256": token_hash(TOKEN)}
    log = tmp_path / "streamlit.log"
    with live.streamlit_server(env, log, options=("--logger.level", "debug")) as (base, _):
        with httpx.Client(base_url=base, timeout=60) as client:
            assert client.get("/predict/u10001").status_code == 401
            assert client.get("/predict/u10001", headers={"Authorization": f"Bearer {OTHER_TOKEN}"}).status_code == 401
            right = client.get("/predict/u10001", headers={"Authorization": f"Bearer {TOKEN}"})
            assert right.status_code == 200 and right.json()["SESSION_ID"] == "u10001"
            assert client.get("/metrics").status_code == 200
    written = log.read_text()
    assert TOKEN not in written and OTHER_TOKEN not in written and "Traceback" not in written


# -- the dashboard ------------------------------------------------------------------------------------


def dashboard(user: dict | None = None, auth: bool = True) -> AppTest:
    at = AppTest.from_file(str(PROJECT / "streamlit_app.py"), default_timeout=TIMEOUT)
    if auth:
        at.secrets["auth"] = AUTH
    if user is not None:
        at.user = user
    at.query_params["session"] = "u10001"
    at.run()
    assert not at.exception
    return at


def shows_data(at: AppTest) -> bool:
    text = live.page_text(at)
    return bool(at.metric) or "sessions" in text or "u10001" in text


def test_an_open_demo_says_so(open_settings):
    at = dashboard(auth=False)
    assert shows_data(at) and [m.label for m in at.metric][0] == "Predicted gender"
    assert "Open demo" in live.page_text(at)


def test_the_allowlist_lets_in_only_whom_it_names(open_settings):
    open_settings.setenv("GENDER_ALLOWED_USERS", "ana@shop.example,@team.example")

    at = dashboard(auth=False)  # people named, but no login configured: nothing shown
    assert not shows_data(at) and "no login is configured" in at.error[0].value

    at = dashboard({"is_logged_in": False})
    assert not shows_data(at) and [b.label for b in at.button] == ["Log in"]

    for email in ("bob@else.example", "ana@shop.example.evil"):
        at = dashboard({"is_logged_in": True, "email": email})
        assert not shows_data(at), email
        assert "Sorry" in at.warning[0].value and [b.label for b in at.button] == ["Log out"]

    at = dashboard({"is_logged_in": True, "email": "zoe@team.example", "email_verified": False})
    assert not shows_data(at)

    for email in ("ana@shop.example", "Zoe@Team.Example"):
        at = dashboard({"is_logged_in": True, "email": email})
        assert [m.label for m in at.metric][0] == "Predicted gender", email
        assert "Logged in as" in live.page_text(at) and "Open demo" not in live.page_text(at)


# -- one real login, in Chromium, at a local OIDC provider ------------------------------------------


@pytest.fixture
def oidc_provider(monkeypatch):
    from oidc_provider_mock import run_server_in_thread

    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # plain http: loopback only
    with run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


# Whether the sidebar's page menu was ever in the page: run before the app's own scripts.
MENU_WATCH = """
window.menuSeen = false;
new MutationObserver(() => {
  window.menuSeen ||= document.querySelector('[data-testid="stSidebarNav"]') !== null;
}).observe(document, {subtree: true, childList: true});
"""


@pytest.mark.slow
def test_logging_in_through_oidc_in_a_browser(trained_demo, tmp_path, browser, oidc_provider):
    url, model_dir = trained_demo
    port = live.free_port()
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "a-cookie-secret-for-the-browser-test"\n'
        'client_id = "gender-lens"\n'
        'client_secret = "client-secret"\n'
        f'server_metadata_url = "{oidc_provider}/.well-known/openid-configuration"\n'
    )
    env = {
        "GENDER_DB_URL": url,
        "GENDER_MODEL_DIR": str(model_dir),
        "GENDER_ALLOWED_USERS": "ana@shop.example",
        "AUTHLIB_INSECURE_TRANSPORT": "1",
    }
    options = ("--secrets.files", str(secrets))
    with live.streamlit_server(env, tmp_path / "streamlit.log", options=options, port=port) as (base, _):
        for email, allowed in (("ana@shop.example", True), ("bob@else.example", False)):
            context = browser.new_context()
            context.add_init_script(MENU_WATCH)
            page = context.new_page()
            page.goto(f"{base}/?session=u10001")
            page.wait_for_selector(live.IDLE, timeout=120_000)
            assert "Predicted gender" not in page.inner_text("body")
            # No menu before the login, not even for a moment: it listed the pages/ folder's files
            # ("streamlit app", "find"…), and on a fresh server's first session it came and went.
            assert page.locator('[data-testid="stSidebarNav"]').count() == 0
            assert page.evaluate("window.menuSeen") is False
            page.get_by_role("button", name="Log in").click()
            page.wait_for_selector('input[name="sub"]', timeout=60_000)  # the provider's login form
            page.fill('input[name="sub"]', email)
            page.get_by_role("button", name="Authorize").click()
            page.wait_for_url(f"{base}/**", timeout=60_000)
            page.wait_for_selector(live.IDLE, timeout=120_000)
            if allowed:
                page.wait_for_selector("text=Logged in as", timeout=120_000)
                assert "Predict a visitor's gender" in page.inner_text("body")
                assert page.locator('[data-testid="stSidebarNav"]').count() == 1  # the menu, once let in
            else:
                page.wait_for_selector("text=Sorry", timeout=120_000)
                body = page.inner_text("body")
                assert page.locator('[data-testid="stSidebarNav"]').count() == 0
                assert "Predicted gender" not in body and "sessions" not in body
            context.close()
    assert "Traceback" not in (tmp_path / "streamlit.log").read_text()
    assert os.environ.get("AUTHLIB_INSECURE_TRANSPORT") == "1"
