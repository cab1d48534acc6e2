"""The what-if editor in Chromium on the real logs: remove a view, see P(male) move, share the link.

A real `streamlit run` on the PAKDD'15 logs (conftest's `real_db`) with a model trained on them
(the logistic candidate alone: the editor needs a model, not the comparison of all three).
"""

import pytest

from gender import artifact, predict, whatif
from gender.session import Session
from gender.train import CANDIDATES, train
from tests import live
from tests.test_browser import no_exceptions, settle, shoot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_server(real_db, tmp_path_factory):
    """A Streamlit server on the real logs; yields (base URL, models)."""
    model_dir = tmp_path_factory.mktemp("real-models")
    train(real_db, model_dir, candidates=tuple(c for c in CANDIDATES if c.name == "logistic"))
    env = {"GENDER_DB_URL": real_db.url.render_as_string(hide_password=False), "GENDER_MODEL_DIR": str(model_dir)}
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    with live.streamlit_server(env, log) as (base, _):
        yield base, artifact.current(model_dir)


def a_removal_that_moves_p_male(real_db, model) -> tuple[str, int, float, float]:
    """A real session and a view whose removal moves P(male) visibly (by 0.01 or more), with
    P(male) before and after: the after computed here, on the session built by hand."""
    for session_id in ("u10003", *(f"u{n}" for n in range(10004, 10400))):
        record = predict.lookup(real_db, session_id)
        if record is None or record.n_views < 3:
            continue
        before = float(model.p_male(record.frame)[0])
        for index in range(record.n_views):
            paths = record.paths[:index] + record.paths[index + 1 :]
            by_hand = Session(session_id, record.start_time, record.end_time, None, paths)
            after = float(model.p_male(by_hand.frame)[0])
            if abs(round(after, 2) - round(before, 2)) >= 0.01:
                return session_id, index, before, after
    raise AssertionError("no removal moves P(male) on the real logs")


def test_removing_a_view_moves_p_male_and_the_link_opens_it(real_server, real_db, browser):
    base, models = real_server
    session_id, index, before, after = a_removal_that_moves_p_male(real_db, models.treatment)
    record = predict.lookup(real_db, session_id)
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    try:
        page.goto(f"{base}/?session={session_id}")
        settle(page)
        assert f"P(male) {before:.2f}" in page.inner_text("body")
        page.get_by_text("What if… edit this session").click()
        settle(page)
        # .first: Streamlit 1.67 draws a narrow button twice (one copy measures it for an ellipsis)
        removed = whatif.path_text(record.paths[index])
        sentence = f"Removing {removed} (view {index + 1}) moved P(male) from {before:.2f} to {after:.2f}."
        page.locator(f".st-key-whatif_remove_{index} button").first.click()
        # The sentence, not idle alone: under load the page is still idle from before the click
        # when settle looks, with the waterfall before the edit on it.
        page.get_by_text(sentence).wait_for(timeout=60_000)
        settle(page)
        page.wait_for_selector(".js-plotly-plot .waterfalllayer .trace", timeout=60_000)
        body = page.inner_text("body")
        assert f"P(male) {after:.2f}" in body  # the answer follows, read against the prior and threshold
        assert "not written to the prediction log" in body
        assert "whatif=" in page.url
        no_exceptions(page)
        shoot(page, "predict-whatif")
        shared = page.url
    finally:
        page.close()

    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    try:
        page.goto(shared)  # a new tab: a new Streamlit session, the edit only in the link
        settle(page)
        page.wait_for_selector(".js-plotly-plot .waterfalllayer .trace", timeout=60_000)
        assert sentence in page.inner_text("body")
        assert page.locator(".st-key-whatif_on input").is_checked()
        no_exceptions(page)
    finally:
        page.close()
