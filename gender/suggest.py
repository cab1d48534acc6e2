"""Session ids suggested as one types: the one answer the search box gets (`answer`), and the
small HTTP route that gives it without a Streamlit rerun.

    GET <server.baseUrlPath>/_gender/suggest?q=TEXT   (header X-Gender-Search: TOKEN)
    -> {"query": TEXT, "suggestions": [{"id", "label"}, ...], "note": text or null}

The box's script (session_search.js) asks this route on every change of its text; Python's
fragment (ui.session_search) answers the same `answer` when the route cannot be used (a failed
request, a refused token, or AppTest, where no script runs).

Who may ask: the page mints a capability token each time the box is drawn (`mint`), which
happens only after streamlit_app.py's access gate has let the visitor in, and hands it to the
box's script. The token is an expiry time signed with HMAC-SHA256 under a random key of this
process (the page scripts and the server share the process, so the key never leaves it); the route
checks it in constant time (`valid`) and answers anything else with a JSON 401 and no data. A
token is good for an hour; a server started again (a new key) refuses older ones, and the box
falls back to asking Python, which hands it a new one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gender import db
from gender.errors import GenderError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy import Engine

ROUTE = "/_gender/suggest"  # under server.baseUrlPath; a path no page or Streamlit route uses
HEADER = "X-Gender-Search"
TOKEN_SECONDS = 3_600
_KEY = secrets.token_bytes(32)  # this process's: tokens are never valid on another server
_TOKEN = re.compile(r"([0-9]{1,12})\.([0-9a-f]{64})")
REFUSED = "a valid search token is required: reload the dashboard's page"
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


# -- the answer --------------------------------------------------------------------------------------


def label(session_id: str) -> str:
    """An id as a suggestion shows it: control characters made visible (set as text, never markup)."""
    return session_id if session_id.isprintable() else session_id.encode("unicode_escape").decode("ascii")


def answer(query: object, engine: Callable[[], Engine]) -> dict:
    """What the search box shows for `query`: at most db.SUGGESTIONS ids that start with it (a
    range of the primary key), each with its label, and a note in words (None when there is
    nothing to say). `engine` is called for the database, so that a database that cannot be
    reached, or settings that cannot be read, are a note too. The one place this is decided: the
    route and the fragment both answer with it."""
    query = query if isinstance(query, str) else ""
    found, note = [], None
    if query.strip():
        try:
            found = db.suggest_session_ids(engine(), query)
        except GenderError:
            note = "The database does not answer: no suggestions."
        else:
            if len(query.strip()) > db.SESSION_ID_LENGTH:
                note = f"A session id has at most {db.SESSION_ID_LENGTH} characters."
            elif not found:
                note = "No session id starts with this."
            elif len(found) == db.SUGGESTIONS:
                note = f"The first {db.SUGGESTIONS} ids in order: type more to narrow them down."
    return {
        "query": query,
        "suggestions": [{"id": found_id, "label": label(found_id)} for found_id in found],
        "note": note,
    }


# -- the capability token -----------------------------------------------------------------------------


def _signature(expiry: str) -> str:
    return hmac.new(_KEY, f"gender-lens session search until {expiry}".encode("ascii"), hashlib.sha256).hexdigest()


def mint(now: float | None = None) -> str:
    """A token for the route, good for TOKEN_SECONDS from `now`: "EXPIRY.HMAC". Mint it only for
    a page that has passed the access gate."""
    expiry = str(int(time.time() if now is None else now) + TOKEN_SECONDS)
    return f"{expiry}.{_signature(expiry)}"


def valid(token: object, now: float | None = None) -> bool:
    """Whether `token` was minted by this process and has not expired; the signature is compared
    with hmac.compare_digest, so the time taken says nothing about how close a forgery came."""
    if not isinstance(token, str) or len(token) > 100:
        return False
    match = _TOKEN.fullmatch(token)
    if match is None:
        return False
    expiry, signature = match.groups()
    if not hmac.compare_digest(_signature(expiry), signature):
        return False
    return (time.time() if now is None else now) < int(expiry)


# -- the route ------------------------------------------------------------------------------------------


def base_path() -> str:
    """server.baseUrlPath as a path's start ("/lens"; "" when none): the dashboard's pages are under it."""
    from streamlit import config

    base = (config.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}" if base else ""


def route_path() -> str:
    """The route's path on this server: ROUTE under server.baseUrlPath (what the page hands the
    box's script, and what the server answers)."""
    return base_path() + ROUTE


def is_route(path: str) -> bool:
    """Whether a request's (decoded) path is the route's."""
    return path.endswith(ROUTE) and path == route_path()


def add_route(app: FastAPI, service) -> None:
    """The route on the HTTP service's app (gender/api.py): its errors are JSON as the others',
    and it is counted in /metrics as "/_gender/suggest" (with the base path, if any), never by text."""

    @app.get(quote(route_path()), include_in_schema=False, response_model=None)
    async def suggest(request: Request, q: str = "") -> JSONResponse:
        if not valid(request.headers.get(HEADER)):
            # The same answer for a missing, a forged and an expired token; never echoed or logged.
            raise HTTPException(401, REFUSED, {"WWW-Authenticate": HEADER, **NO_STORE})
        return JSONResponse(await service.run(answer, q, service.engine), headers=NO_STORE)
