"""The original web service's routes, served beside the dashboard on the same server.

    GET  /predict/{session_id}             {"GROUP","MODEL","PREDICTION","P_MALE","SESSION_ID","THRESHOLD"}
    GET  /count/{session_id}/{category}    {"CATEGORY","COUNT","SESSION_ID"}
    POST /api/predict                      a JSON list of up to 1,000 ids -> a list of /predict answers
    GET  /api/health                       database reachable, models loaded, their ids
    (HEAD too on /predict, /count and /api/health, as the original's Flask answered it)
    GET  /api/docs, /api/openapi.json      the OpenAPI description and its page
    GET  /metrics                          Prometheus: requests, latency, predictions, model, database errors,
                                           the prediction log's rows

The answers come from the same builders as the CLI's and the Predict page's (`serve.serve`,
`Served.as_json`, `Prediction.unknown`, `predict.count`), with the session's A/B group's model,
and every prediction is logged with `served_via = "api"`. Errors are JSON, {"ERROR", "STATUS"}.
Every JSON answer has its keys sorted, as the original's Flask sent them (`Answer`).

Ids and category codes are any text: a "/" inside one travels as %2F. Servers decode %2F before
routing, which would make `/count/a%2Fb/C` the three segments a, b, C; the routes here are
therefore matched on the path as received (`raw_path`) and each segment is decoded afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, unquote, unquote_to_bytes

from fastapi import Body, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic import AfterValidator
from sqlalchemy import Engine
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException

from gender import artifact, db, predict, serve, suggest
from gender.access import Access, load_access
from gender.answers import Prediction, counted
from gender.config import SECRETS_FILE, Settings, load_settings
from gender.errors import BadData, DatabaseUnavailable, GenderError, ModelUnavailable
from gender.trained import Models

log = logging.getLogger("gender.api")

API_PREFIXES = ("/predict", "/count", "/api", "/metrics")  # what this app answers; the rest is the dashboard's
MAX_BATCH = 1_000
# Threads answering API requests at once. The work is Python holding the GIL most of the time, so
# more threads than cores add switching, not answers; and Streamlit's pool (28 threads, for its
# static files) stays free for the dashboard whatever the API's load.
API_THREADS = 4


class Answer(JSONResponse):
    """JSON with its keys sorted, as the original's Flask service sent them: its two answers
    byte for byte, {"PREDICTION":…,"SESSION_ID":…} and {"CATEGORY":…,"COUNT":…,"SESSION_ID":…}."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True).encode()


def _storable(text: str) -> str:
    """Text a database can hold: JSON may write a lone surrogate ("\\ud800"), which no UTF-8 text
    holds, and which no answer could echo."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a lone surrogate (\\ud800-\\udfff) is not text a database can hold") from None
    return text


StoredText = Annotated[str, AfterValidator(_storable)]


def is_api_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in API_PREFIXES) or suggest.is_route(path)


# -- what the routes share in one process ---------------------------------------------------------


class Metrics:
    """The Prometheus metrics of one app, in its own registry (tests build several apps), with the
    process's prediction log's (`PredictionLogMetrics`).

    Under `python -m gender api --workers N` each process counts in files of a folder named by
    PROMETHEUS_MULTIPROC_DIR, and /metrics, whichever process answers it, adds them all up.
    """

    def __init__(self):
        self.registry = CollectorRegistry()
        self._shown_models: set[tuple[str, ...]] = set()
        self.requests = Counter(
            "gender_http_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gender_http_request_seconds",
            "Time to answer an HTTP request, by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.predictions = Counter(
            "gender_predictions_served",
            "Predictions served over HTTP, by model, A/B group and label",
            ["model", "group", "label"],
            registry=self.registry,
        )
        self.model = Gauge(
            "gender_model_info",
            "The models serving (value 1), with their id and training date",
            ["slot", "model_id", "candidate", "trained_at"],
            registry=self.registry,
            multiprocess_mode="livemostrecent",  # across processes: what the last to load models set
        )
        self.trained = Gauge(
            "gender_model_trained_timestamp_seconds",
            "When each serving model was trained",
            ["slot"],
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self.database_errors = Counter(
            "gender_database_errors", "Requests that failed on the database", registry=self.registry
        )
        self.registry.register(LOG_METRICS)  # the process's, as its writer: not this app's alone
        # prometheus_client's labels() checks and locks on every call: each label set's child is kept.
        self._children: dict[tuple, object] = {}  # (metric, *labels) -> its child

    def _child(self, metric, *labels: str):
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, route: str, method: str, status: int | None, seconds: float) -> None:
        """One HTTP request answered, labelled by route template (never by the ids in it)."""
        self._child(self.requests, route, method, str(status)).inc()
        self._child(self.latency, route).observe(seconds)

    def prediction(self, model: str, group: str, label: str) -> None:
        self._child(self.predictions, model, group, label).inc()

    def show_models(self, models: Models) -> None:
        # Models no longer serving drop to 0 rather than vanish: prometheus_client cannot remove a
        # label set that other processes have written.
        for labels in self._shown_models:
            self.model.labels(*labels).set(0)
        for slot, model in (("treatment", models.treatment), ("control", models.control)):
            if model is None:
                continue
            trained_at = model.card.trained_at
            labels = (slot, model.model_id, model.candidate, trained_at.isoformat())
            self.model.labels(*labels).set(1)
            self._shown_models.add(labels)
            self.trained.labels(slot).set(trained_at.timestamp())

    def exposition(self) -> bytes:
        """The text format: this process's metrics, or every worker's when there are several."""
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            return generate_latest(self.registry)
        everyone = CollectorRegistry()
        MultiProcessCollector(everyone)
        return generate_latest(everyone)


class PredictionLogMetrics(serve.LogMeter):
    """The prediction log's metrics: what the process's writer (`serve.log_writer`, which writes
    the dashboard pages' rows too) did with its rows. One set a process, as the writer is, which
    every app's registry shows (a Prometheus collector)."""

    def __init__(self):
        self.rows_written = Counter(
            "gender_prediction_log_rows_written",
            "Rows in statements prediction_log committed (pairs it held already included: the insert skips them)",
            registry=None,
        )
        self.rows_dropped = Counter(
            "gender_prediction_log_rows_dropped",
            "Rows never written to prediction_log: too many waiting, or unwritten at shutdown",
            registry=None,
        )
        self.write_failures = Counter(
            "gender_prediction_log_write_failures",
            "Writes to prediction_log that failed (their rows wait for the next try)",
            registry=None,
        )
        self.rows_waiting = Gauge(
            "gender_prediction_log_rows_waiting",
            "Rows in memory not yet written to prediction_log: queued, being written, or kept through an outage",
            registry=None,
            multiprocess_mode="livesum",  # across processes: every live worker's rows
        )
        self._metrics = (self.rows_written, self.rows_dropped, self.write_failures, self.rows_waiting)

    def written(self, rows: int) -> None:
        self.rows_written.inc(rows)

    def dropped(self, rows: int) -> None:
        self.rows_dropped.inc(rows)

    def failed(self) -> None:
        self.write_failures.inc()

    def waiting(self, rows: int) -> None:
        self.rows_waiting.set(rows)

    def describe(self):
        return [family for metric in self._metrics for family in metric.describe()]

    def collect(self):
        return [family for metric in self._metrics for family in metric.collect()]


# One a process, as its writer is: the writer is told here, where the metrics are made, as serve.py
# (imported by the CLI and the pages without prometheus) knows none of them.
LOG_METRICS = PredictionLogMetrics()
serve.log_writer.meter = LOG_METRICS


class Service:
    """Settings, access, the engine (one pooled engine per database) and the models, shared by
    every request of a process. Settings are re-read when the secrets file changes; the models
    come from `artifact.current`, as the dashboard's do."""

    def __init__(self, metrics: Metrics | None = None, shares_loop: bool = True):
        self.metrics = metrics or Metrics()
        # The dashboard's server shares its event loop with the pages: answers then go to threads
        # so the pages keep it under load (the Predict page took 9-16 s, not 2-4, with them on it).
        self.shares_loop = shares_loop
        self._lock = threading.Lock()
        self._config_key: object = None
        self._config: tuple[Settings, Access] | None = None
        self._engines: dict[str, Engine] = {}
        self._engine: tuple[Settings, Engine] | None = None  # the last settings' engine, found without a lookup
        self._models: Models | None = None
        self._threads = ThreadPoolExecutor(API_THREADS, thread_name_prefix="api")
        self.breaker = Breaker()

    async def run(self, function: Callable, *args):
        """function(*args) on one of the API's own API_THREADS threads: a plain executor, lighter
        per request than anyio's hop with its limiter and cancel scopes."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, function, *args)

    async def run_short(self, function: Callable, *args):
        """function(*args) for one session: served alone, on a SQLite file, on the event loop itself
        (the query is a function call, nothing to wait for: handing the work to a thread and back
        only added GIL hand-overs to the slowest answers' time); else on a thread as `run`."""
        if not self.shares_loop and self.engine().dialect.name == "sqlite":
            return function(*args)
        return await self.run(function, *args)

    def config(self) -> tuple[Settings, Access]:
        try:  # one stat a request: a changed secrets file applies from the next request
            stat = os.stat(SECRETS_FILE)
            key = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = None
        if self._config is None or key != self._config_key:
            with self._lock:
                self._config, self._config_key = (load_settings(), load_access()), key
        return self._config

    @property
    def settings(self) -> Settings:
        return self.config()[0]

    @property
    def access(self) -> Access:
        return self.config()[1]

    def engine(self, settings: Settings | None = None) -> Engine:
        settings = settings or self.settings
        held = self._engine
        if held is not None and held[0] is settings:  # unchanged settings: no URL to render per request
            return held[1]
        url = settings.db_url.render_as_string(hide_password=False)
        with self._lock:
            # Queries that wait seconds at most (db.ANSWER_TIMEOUT): the routes' are small lookups,
            # and a stalled one must become a 503 (the Breaker), not an answer minutes late.
            engine = self._engines.get(url) or db.connect(url, query_timeout=db.ANSWER_TIMEOUT)
            self._engines[url] = engine
            self._engine = (settings, engine)
        return engine

    def load_models(self) -> None:
        """The models loaded now, at the app's start, before it takes a request: a first request
        does not wait for them, and a worker of several never first loads files that have stopped
        loading since the others did (it would answer 503 while they serve). Without models that
        load, the app starts all the same and its routes say why, as they do later."""
        try:
            self.models()
        except GenderError as exc:  # no model yet, its files refused, unreadable settings
            log.warning("no models serving at the start: %s", exc)
        except Exception:  # a bug: said here, and again by each request it fails
            log.exception("unexpected error loading the models at the start")

    def models(self, settings: Settings | None = None) -> Models:
        # A retrain's models load on a thread of their own while these answer (and these stay if
        # the new files do not load): no request waits seconds for a load.
        models = artifact.current((settings or self.settings).model_dir, wait=False)  # raises ModelUnavailable
        if models is not self._models:  # loaded anew: a start or a retrain
            with self._lock:
                self._models = models
                self.metrics.show_models(models)
                settle_heap()
        return models


BREAK_SECONDS = 5


class Breaker:
    """After the database fails a request, the next ones are answered 503 at once, for
    BREAK_SECONDS and then while one request tries the database again, instead of each waiting
    its own timeouts on a server that does not answer (4 s for the pool's ping and 4 more to
    reconnect, or 4 s for a query that stalls: db.ANSWER_TIMEOUT) in the queue of API_THREADS
    behind it. The server log says so once when the database fails, and once when it answers
    again, with how many requests were answered 503 meanwhile (each process of several for its
    own; the metrics count them too)."""

    def __init__(self, seconds: float = BREAK_SECONDS):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._failure: tuple[float, DatabaseUnavailable] | None = None  # when, and what it said
        self._trying = False
        self._since = 0.0  # time.monotonic() of the outage's first failure
        self._refused = 0  # requests answered 503 in this outage

    def call(self, function: Callable, *args):
        trying = self._failure is not None and self._admit()
        try:
            result = function(*args)
        except DatabaseUnavailable as exc:
            with self._lock:  # said under the lock: the log's order is the breaker's
                if self._failure is None:
                    self._since, self._refused = time.monotonic(), 0
                    log.warning("%s: requests are answered 503 until it answers again", exc)
                self._failure, self._trying = (time.monotonic(), exc), False
                self._refused += 1
            raise
        except BaseException:
            if trying:
                self._trying = False
            raise
        if trying:
            with self._lock:
                self._failure, self._trying = None, False
                log.warning(
                    "the database answers again after %.1f s; %s answered 503 meanwhile",
                    time.monotonic() - self._since,
                    counted(self._refused, "request"),
                )
        return result

    def _admit(self) -> bool:
        """Whether this request may try the database (True: it is the one trying it again);
        raises the last failure while the breaker is open."""
        with self._lock:
            failure = self._failure
            if failure is None:
                return False
            if self._trying or time.monotonic() - failure[0] < self.seconds:
                self._refused += 1
                raise DatabaseUnavailable(*failure[1].args)
            self._trying = True
            return True


def settle_heap() -> None:
    """Hide what is alive now (the models, the libraries) from the garbage collector's full passes:
    each went over all of it, stalling the process 100-200 ms under load (benchmarks/api.py, the
    slowest /predict answers). Once per models loaded; what a retrain leaves is collected first
    (a pass of 0.2-0.3 s, once: an explainer the dashboard built may hold the old models in a cycle)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


# -- ids in the path ------------------------------------------------------------------------------


def path_text(segment: str) -> str:
    """One path segment as the text it stands for: percent-decoded as UTF-8 (bytes that are not
    UTF-8 become U+FFFD, so no answer carries text that cannot be sent as JSON)."""
    return unquote_to_bytes(segment.encode("latin-1")).decode("utf-8", "replace")


class IdPath(Convertor):
    """The rest of the path, "/" included, but never empty: `/predict/` is no route (a 404), as
    the original's Flask `<session_id>` matched no empty id."""

    regex = ".+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("id_path", IdPath())
PREDICT_ROUTE = "/predict/{session_id:id_path}"
COUNT_ROUTE = "/count/{session_id}/{category}"


@dataclass(frozen=True)
class Direct:
    """GET (and HEAD) /predict/{id} and /count/{id}/{category}, the two routes the original's clients call
    all the time, answered without FastAPI's router, request object and dependency solving (0.15
    to 0.3 ms of the server's CPU a request, `benchmarks/api.py --server-cpu`). The same functions
    answer as behind FastAPI's routes for these paths (they stay, for the OpenAPI description and
    for every other method), with the same Guard and the same error handlers."""

    service: Service
    guard: Guard
    predict: Callable[[str], dict]
    probe: Callable[[str], dict]  # HEAD /predict: the same answer, neither logged nor counted
    count: Callable[[str, str], dict]
    handlers: dict

    def route(self, scope) -> tuple[str, Callable, tuple] | None:
        """(route template, answer, its arguments) for a request of these routes, else None. The
        path is the raw one: matched as FastAPI's templates match it ("id_path": any non-empty rest; a plain
        parameter: one non-empty segment)."""
        if scope["method"] not in ("GET", "HEAD"):
            return None
        path = scope["path"]
        if path.startswith("/predict/") and len(path) > 9:
            answer = self.predict if scope["method"] == "GET" else self.probe
            return PREDICT_ROUTE, answer, (path_text(path[9:]),)
        if path.startswith("/count/"):
            session_id, _, category = path[7:].partition("/")
            if session_id and category and "/" not in category:
                return COUNT_ROUTE, self.count, (path_text(session_id), path_text(category))
        return None

    async def answer(self, scope, receive, send, function: Callable, arguments: tuple) -> None:
        try:
            if self.guard.refuses(scope["headers"]):  # unreadable settings raise here: a 503 as behind FastAPI
                response = error(401, REFUSED, UNAUTHORIZED)
            else:
                response = Answer(await self.service.run_short(function, *arguments))
        except Exception as exc:  # the app's handlers, found as Starlette finds them (by class)
            handler = next((self.handlers[k] for k in type(exc).__mro__ if k in self.handlers), None)
            if handler is None:
                raise
            response = await handler(None, exc)
        await response(scope, receive, send)


class RawPathRouting:
    """In front of FastAPI (`Api.front`): routes on the path as received, %2F staying inside its
    segment (see the module's docstring). Answers the hot routes itself (`Direct`), everything
    else goes on to FastAPI's middleware and routes. Also counts and times every request, labelled
    by route template (never by the ids in it), and logs an error escaping the app, answering it
    in JSON unless an answer was already sent."""

    def __init__(self, app, metrics: Metrics, direct: Direct | None = None):
        self.app, self.metrics, self.direct = app, metrics, direct

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path")
        # Without raw_path (a server that does not give it), the decoded path encoded again: the
        # same text once decoded, only a %2F inside an id is then a separator, as anywhere else.
        scope["path"] = raw.decode("latin-1") if raw else quote(scope["path"], safe="/")
        status, started, counted = None, time.perf_counter(), False
        direct = self.direct.route(scope) if self.direct is not None else None

        def count() -> None:
            nonlocal counted
            if not counted:
                counted = True
                label = direct[0] if direct is not None else getattr(scope.get("route"), "path", None) or "(no route)"
                self.metrics.request(label, scope["method"], status, time.perf_counter() - started)

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Counted before the answer's last bytes leave: a client that has its answer finds
                # it in /metrics, even from another worker (counted after, it could be missing).
                count()
            await send(message)

        try:
            if direct is not None:
                await self.direct.answer(scope, receive, sending, *direct[1:])
            else:
                await self.app(scope, receive, sending)
        except Exception:  # a bug: logged here, answered in JSON unless an answer is under way
            log.exception("unexpected error answering an API request")
            if status is None:
                await error(500, INTERNAL)(scope, receive, sending)
        finally:
            count()  # an answer that never finished (the client left, a bug mid-answer): counted all the same


# -- errors ----------------------------------------------------------------------------------------


INTERNAL = "internal error; the details are in the server log"


RETRY_AFTER = {"Retry-After": str(BREAK_SECONDS)}


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return Answer({"ERROR": message, "STATUS": status}, status_code=status, headers=headers)


async def unexpected(_request, _exc: Exception) -> JSONResponse:
    """FastAPI's answer to a bug in a route, in JSON; the error goes on up to RawPathRouting, which logs it."""
    return error(500, INTERNAL)


def _handlers(metrics: Metrics) -> dict:
    async def http_error(request: Request | None, exc: HTTPException):  # None: from Direct, at the root
        docs = (request.scope.get("root_path", "") if request else "") + "/api/docs"  # under a base path if asked there
        message = exc.detail if exc.status_code != 404 else f"no such route; the routes are listed at {docs}"
        return error(exc.status_code, str(message), getattr(exc, "headers", None))

    async def invalid(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()[:5])
        if not request.headers.get("content-type", "").startswith("application/json"):  # read as text, not JSON
            problems += " (send the body as JSON, with the header Content-Type: application/json)"
        return error(422, f"invalid request: {problems}")

    async def database(_request, exc: DatabaseUnavailable):
        metrics.database_errors.inc()
        return error(503, str(exc), RETRY_AFTER)  # the URL in it has its password hidden

    async def no_model(_request, exc: ModelUnavailable):
        return error(503, str(exc), RETRY_AFTER)

    async def bad_data(_request, exc: BadData):  # a row other software wrote: not the client's doing
        return error(500, str(exc))

    async def misconfigured(_request, exc: GenderError):  # e.g. unreadable settings: no input of a client raises it
        return error(503, str(exc), RETRY_AFTER)

    return {
        HTTPException: http_error,
        RequestValidationError: invalid,
        DatabaseUnavailable: database,
        ModelUnavailable: no_model,
        BadData: bad_data,
        GenderError: misconfigured,
    }


# -- the app -----------------------------------------------------------------------------------------

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}
REFUSED = "a valid bearer token is required (Authorization: Bearer TOKEN)"


@dataclass(frozen=True)
class Guard:
    """A dependency: lets a request through when the deployment is open, the route is public by
    setting, or it carries a configured bearer token; otherwise 401 with no data."""

    service: Service
    public: Callable[[Access], bool] = lambda access: False

    def refuses(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether a request with these headers (ASGI's: lower-case names) gets a 401."""
        access = self.service.access
        if not access.restricted or self.public(access):
            return False
        given = next((value.decode("latin-1") for name, value in headers if name == b"authorization"), "")
        scheme, _, token = given.partition(" ")
        return scheme.lower() != "bearer" or not access.allows_token(token.strip())

    async def __call__(self, request: Request) -> None:
        if self.refuses(request.scope["headers"]):
            # The same answer for a missing and a wrong token; the token is never logged or echoed.
            raise HTTPException(401, REFUSED, UNAUTHORIZED)


class Api(FastAPI):
    """The service's FastAPI app with `RawPathRouting` in front of FastAPI's own middleware: the
    hot routes skip its five layers (50 µs of a /predict's 640 µs of CPU, in process), every other
    request goes through them as usual."""

    front: RawPathRouting | None = None  # set by create_app

    async def __call__(self, scope, receive, send):
        await (self.front or self.behind)(scope, receive, send)

    async def behind(self, scope, receive, send):
        """FastAPI's own handling: its middleware, routes and error handlers."""
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict:
        """FastAPI's description, with an operationId of its own for each method: FastAPI gives the
        GET and the HEAD of one route the same one (and warns in the server log), where the OpenAPI
        spec and the clients generated from it want them unique. One route of both methods keeps
        its 405s' `Allow: GET, HEAD`."""
        if self.openapi_schema is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Duplicate Operation ID", UserWarning)
                schema = super().openapi()
            for operations in schema["paths"].values():
                if {"get", "head"} <= set(operations):  # one route of both: an id ending in either
                    for method in ("get", "head"):
                        shared = operations[method]["operationId"]
                        operations[method]["operationId"] = re.sub(r"_(get|head)$", "", shared) + f"_{method}"
        return self.openapi_schema


def create_app(service: Service | None = None, dashboard: bool = True) -> Api:
    """The HTTP service as an ASGI app of its own: the dashboard's server puts it in front of the
    pages with `ApiFirst` (`dashboard`: with the search box's route, sharing the event loop),
    `python -m gender api` serves it alone, tests call it directly."""
    service = service or Service(shares_loop=dashboard)
    handlers = _handlers(service.metrics)

    @asynccontextmanager
    async def lifespan(app):  # served alone (`python -m gender api`); the dashboard's server has its own
        service.load_models()
        yield
        await close_prediction_log()

    app = Api(
        lifespan=lifespan,
        title="gender-lens",
        summary="The original gender-prediction service's routes, with A/B groups, a batch route and metrics.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        exception_handlers=handlers | {Exception: unexpected},  # Direct answers with `handlers` alone
        # "/predict" and "/count/a/b/" are no routes (404, as the original's): no redirect either,
        # whose address a request's Host header would set.
        redirect_slashes=False,
    )
    app.state.service = service
    guard = Guard(service)
    data = [Depends(guard)]

    def answer(session_id: str, delivered: bool = True) -> dict:
        """One /predict answer, logged: the same as the Predict page's and the CLI's (computed by
        `gender.fast`, see `serve.serve`); the log is written by a background thread, in batches.
        Not `delivered` (a HEAD, an uptime probe's): answered, but neither logged nor counted."""
        settings = service.settings
        engine, models = service.engine(settings), service.models(settings)
        served = service.breaker.call(
            serve.serve, engine, models, session_id, settings.ab_salt, settings.treatment_share, False
        )
        if served is None:
            return Prediction.unknown(session_id).as_json()
        if delivered:
            serve.log_in_background(engine, served, "api")
            prediction = served.prediction
            service.metrics.prediction(prediction.model, served.group, prediction.prediction)
        return served.as_json()

    def count(session_id: str, category: str) -> dict:
        return service.breaker.call(predict.count, service.engine(), session_id, category).as_json()

    def answers(session_ids: list[str]) -> list[dict]:
        return [answer(session_id) for session_id in session_ids]

    # GET (and HEAD) /predict and /count, off FastAPI's router
    direct = Direct(service, guard, answer, functools.partial(answer, delivered=False), count, handlers)
    app.front = RawPathRouting(app.behind, service.metrics, direct)

    # The routes return their JSON as a response: FastAPI would otherwise validate and re-encode
    # each answer against a response model, work per request for a dict built here.
    # GET and HEAD (which the original's Flask answered too: uptime checks send it).
    @app.api_route(PREDICT_ROUTE, methods=["GET", "HEAD"], dependencies=data, tags=["original"], response_model=None)
    async def predict_session(session_id: str, request: Request) -> JSONResponse:
        """The session's predicted gender from its A/B group's model, or PREDICTION
        UNKNOWN_SESSION_ID when the database holds no such session (status 200, as the original).
        Percent-encode the id; a "/" inside it as %2F."""
        return Answer(await service.run(answer, path_text(session_id), request.method == "GET"))

    @app.api_route(COUNT_ROUTE, methods=["GET", "HEAD"], dependencies=data, tags=["original"], response_model=None)
    async def count_views(session_id: str, category: str) -> JSONResponse:
        """How many of the session's views have the category at any level; COUNT 0 for an unknown
        session or category. Percent-encode both; a "/" inside either as %2F."""
        return Answer(await service.run(count, path_text(session_id), path_text(category)))

    @app.post("/api/predict", dependencies=data, tags=["batch"], response_model=None)
    async def predict_many(session_ids: Annotated[list[StoredText], Body(max_length=MAX_BATCH)]) -> JSONResponse:
        """/predict for each id of a JSON list (at most 1,000), answers in the same order."""
        return Answer(await service.run(answers, session_ids))

    # The operations routes run on threads of their own, not the answers' API_THREADS: when the
    # database hangs and every answer waits on it, they still say so at once.
    @app.api_route(
        "/api/health",
        methods=["GET", "HEAD"],
        dependencies=[Depends(Guard(service, lambda a: a.health_public))],
        tags=["operations"],
    )
    async def health(request: Request) -> JSONResponse:
        """Whether the database answers and the models are loaded, with their ids (503 if not).
        Where tokens are required, the reasons (naming the database and the model folder) are
        given only to a request with one."""
        return await asyncio.to_thread(checked, not guard.refuses(request.scope["headers"]))

    def checked(detailed: bool) -> JSONResponse:
        def reason(exc: Exception, general: str) -> str:
            return str(exc) if detailed else f"{general} (the reason is given with a token)"

        body: dict = {"STATUS": "ok", "DATABASE": "reachable", "MODEL": None, "CONTROL_MODEL": None}
        try:
            engine = service.engine()
            db.check_schema(engine)
            db.check_reads(engine)  # a server that answers but stalls in a query: unavailable too
        except DatabaseUnavailable as exc:
            service.metrics.database_errors.inc()
            body |= {"STATUS": "unavailable", "DATABASE": reason(exc, "unavailable")}
        try:
            models = service.models()
            control = models.control.model_id if models.control else None
            body |= {"MODEL": models.treatment.model_id, "CONTROL_MODEL": control}
            body["TRAINED_AT"] = models.card.trained_at.isoformat()
        except ModelUnavailable as exc:
            body |= {"STATUS": "unavailable", "MODEL_ERROR": reason(exc, "the models do not load")}
        else:
            newer = artifact.refused(service.settings.model_dir)
            if newer is not None:  # a retrain's files that do not load: the models before them still serve
                body["MODEL_WARNING"] = reason(newer, "newer model files do not load; these models still serve")
                if body["STATUS"] == "ok":
                    body["STATUS"] = "degraded"
        if body["STATUS"] == "unavailable":  # as every 503: when to ask again
            return Answer(body, status_code=503, headers=RETRY_AFTER)
        return Answer(body)

    @app.get("/metrics", dependencies=[Depends(Guard(service, lambda a: a.metrics_public))], tags=["operations"])
    async def metrics() -> Response:
        """Prometheus metrics, text format."""
        return await asyncio.to_thread(exposition)

    def exposition() -> Response:
        try:
            service.models()  # the model's info is current even before the first prediction
        except ModelUnavailable:
            pass
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    if dashboard:  # the dashboard's search box: GET /_gender/suggest (gender/suggest.py)
        suggest.add_route(app, service)
    return app


def standalone_app() -> FastAPI:
    """What `python -m gender api` serves: the routes without the dashboard's search box, whose
    path follows Streamlit's settings (and importing Streamlit takes uvicorn's loggers over)."""
    return create_app(dashboard=False)


class ApiFirst:
    """ASGI middleware for the dashboard's server (`st.App(..., middleware=[...])`): the API's paths
    go straight to the API app, everything else to Streamlit.

    Why a middleware and not `st.App(routes=...)`: Streamlit's own middleware runs before its
    routes and answers 400 in plain text to any path with a ".." segment once decoded, so an id
    such as "a/../b" (sent as a%2F..%2Fb), a legal id, could never be looked up, and errors
    would not be JSON. The API touches no files, so that file-serving guard has nothing to guard
    here (Streamlit itself exempts its upload route for the same reason).
    """

    def __init__(self, app, api: FastAPI | None = None):
        self.app = app
        self.api = api or create_app()
        # Under the dashboard's base path too: a proxy that serves the dashboard there forwards only it.
        self.base = suggest.base_path()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.base:
            scope = self._at_root(scope)
        if scope["type"] == "http" and is_api_path(scope.get("path", "")):
            await self.api(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_log(send))
        else:
            await self.app(scope, receive, send)

    def _at_root(self, scope) -> dict:
        """A request of the API's routes under the base path as one at the root; root_path says
        where it was (the docs page's link to the description follows it)."""
        path = scope.get("path", "")
        rest = path[len(self.base) :] if path.startswith(self.base + "/") else ""
        if not is_api_path(rest):
            return scope
        # The rest of the raw path too (a %2F inside an id stays one), cut after the base's segments
        # however the client encoded them ("/l%65ns" is "/lens"); None: read from the path.
        raw, cut = scope.get("raw_path"), self.base.count("/") + 1
        parts = raw.split(b"/", cut) if raw else []
        matches = len(parts) > cut and unquote(b"/".join(parts[:cut]).decode("latin-1")) == self.base
        raw = b"/" + parts[cut] if matches else None
        return {**scope, "path": rest, "raw_path": raw, "root_path": scope.get("root_path", "") + self.base}

    @staticmethod
    def _closing_log(send):
        """`send` for the server's lifespan, closing the prediction log when the server has shut down."""

        async def sending(message):
            if message["type"] == "lifespan.shutdown.complete":
                await close_prediction_log()
            await send(message)

        return sending


async def close_prediction_log() -> None:
    """At a server's shutdown: the prediction log's waiting rows written before the process ends
    (uvicorn ends on SIGTERM by raising it again once shut down, so no exit handler runs)."""
    await asyncio.get_running_loop().run_in_executor(None, serve.log_writer.close)
