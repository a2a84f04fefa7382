"""The HTTP routes of ``seq2seq serve`` (FastAPI) and the uvicorn server that runs them.

``POST /v1/translate`` queues its sentences in the :class:`~seq2seq.serve.batcher.Batcher`
and awaits them; ``GET /v1/models``, ``/health``, ``/metrics``, the page at ``/`` and
FastAPI's ``/docs`` answer from the event loop meanwhile. Every answer other than 200 is
``{"error": {"code", "message"}}``. With an API key (``SEQ2SEQ_API_KEY``), ``/v1/*`` asks
for it as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (else 401).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seq2seq.errors import Seq2SeqError
from seq2seq.outputs import Translates
from seq2seq.serve.batcher import Batcher, Closed, Options, QueueFull
from seq2seq.serve.metrics import CONTENT_TYPE, Metrics
from seq2seq.serve.options import Limits
from seq2seq.serve.schema import (
    ApiError,
    ErrorResponse,
    TranslateRequest,
    TranslateResponse,
    parse_request,
    read_body,
    response_body,
)

log = logging.getLogger(__name__)

# The page fetches nothing from elsewhere; the browser is told so too.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:"
)
# Label values of seq2seq_requests_total: anything else counts as "other", so that clients
# cannot grow the metrics without bound by inventing paths or methods.
ROUTES = {"/", "/health", "/metrics", "/v1/models", "/v1/translate", "/docs", "/openapi.json"}
METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        401: "missing or wrong API key",
        404: "unknown model id",
        413: "too many sentences, a sentence too long, or a body too big",
        422: "not UTF-8, not JSON, a field of the wrong type, an unknown field, or beam_size above the limit",
        503: "the queue is full, or the server is shutting down",
        504: "no answer within the per-request timeout",
    }.items()
}


class Service:
    """What the routes answer with: the translators, the limits, the batcher and the counters."""

    def __init__(self, translators: Mapping[str, Translates], limits: Limits, workers: int = 1) -> None:
        if not translators:
            raise ValueError("no model to serve")
        self.translators, self.limits = translators, limits
        self.default_model = next(iter(translators))
        self.metrics = Metrics()
        self.batcher = Batcher(
            translators,
            limits.max_queued,
            limits.batch_wait_ms,
            limits.batch_tokens,
            self.metrics.count_batch,
            workers,
        )

    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "queued_sentences": self.batcher.queued}

    async def prometheus(self) -> Response:
        return Response(self.metrics.render(self.batcher.queued), media_type=CONTENT_TYPE)

    async def models(self) -> dict[str, Any]:
        return {
            "default": self.default_model,
            # Not the checkpoints' paths: where files lie on the server is not the clients' business.
            "models": [{"id": name, **_public(t.info)} for name, t in self.translators.items()],
            "limits": self.limits.as_dict(),
        }

    async def translate(self, request: Request) -> JSONResponse:
        # The body is read and checked here rather than by FastAPI, so that a body too big,
        # not UTF-8 or not JSON gets its own clear error.
        started = time.monotonic()
        limits, batcher = self.limits, self.batcher
        body = await read_body(request.stream(), request.headers.get("content-length"), limits)
        req = parse_request(body, limits)
        model = req.model if req.model is not None else self.default_model
        if model not in self.translators:
            raise ApiError(404, "unknown_model", f"no model {model!r}; this server has: {', '.join(self.translators)}")
        options = Options(model, req.beam_size, req.n_best, req.return_attention)
        try:
            results = await asyncio.wait_for(batcher.submit(options, req.src), limits.timeout)
        except QueueFull:
            raise ApiError(
                503, "queue_full", f"{batcher.queued} sentences are waiting (limit {limits.max_queued}); retry later"
            ) from None
        except Closed:
            raise ApiError(503, "shutting_down", "the server is shutting down") from None
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"no translation within this server's {limits.timeout:g} s") from None
        except Seq2SeqError as e:  # e.g. n_best above beam_size
            raise ApiError(422, "invalid_request", str(e)) from None
        except Exception:
            log.exception("translation failed")
            raise ApiError(500, "internal_error", "the translation failed; the server log says why") from None
        self.metrics.count_translation(model, len(req.src), time.monotonic() - started)
        return JSONResponse(response_body(model, results, req.return_scores, req.return_attention))


class Guard:
    """The API key on ``/v1/*`` and the request counter, as plain ASGI middleware: Starlette's
    ``@app.middleware("http")`` runs each request in a task of its own with a stream between
    them, event-loop time that the clients of a batch then wait for
    (``scripts/bench/serve_bench.py``)."""

    def __init__(self, app: ASGIApp, service: Service, api_key: str | None) -> None:
        self.app, self.service, self.api_key = app, service, api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self.api_key is not None and path.startswith("/v1/"):
                _check_key(Headers(scope=scope), self.api_key)
            await self.app(scope, receive, send_counted)
        except ApiError as e:
            await _error_response(e)(scope, receive, send_counted)
        finally:
            method = method if method in METHODS else "other"
            self.service.metrics.count_request(method, path if path in ROUTES else "other", status)


def create_app(
    translators: Mapping[str, Translates], limits: Limits, api_key: str | None = None, workers: int = 1
) -> FastAPI:
    """The application serving ``translators`` (model id -> translator; the first is the
    default); one batcher thread decodes for all of them, or ``workers`` forked processes
    (see :mod:`seq2seq.serve.batcher`)."""
    service = Service(translators, limits, workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.batcher.start()
        yield
        # uvicorn has answered the requests in flight; decode anything left, then stop.
        await asyncio.to_thread(service.batcher.close)

    app = FastAPI(
        title="seq2seq translation server",
        summary="Recurrent encoder-decoder translation; the sentences of concurrent requests are batched.",
        lifespan=lifespan,
    )
    app.state.service = service
    _add_error_handlers(app)

    app.add_middleware(Guard, service=service, api_key=api_key)

    app.get("/", response_class=HTMLResponse, include_in_schema=False)(page)
    app.get("/health", summary="whether the server answers, and its queue")(service.health)
    app.get("/metrics", response_class=PlainTextResponse, summary="counters in the Prometheus text format")(
        service.prometheus
    )
    app.get("/v1/models", summary="the models served, their settings, and the server's limits", responses=ERRORS)(
        service.models
    )
    request_schema = {"application/json": {"schema": TranslateRequest.model_json_schema()}}
    app.post(
        "/v1/translate",
        summary="translate sentences",
        response_model=TranslateResponse,
        responses=ERRORS,
        openapi_extra={"requestBody": {"required": True, "content": request_schema}},
    )(service.translate)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every answer other than 200 in one shape, ``{"error": {"code", "message"}}``."""

    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return _error_response(e)

    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return _error_response(ApiError(e.status_code, "http_error", str(e.detail)), e.headers)

    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        return _error_response(ApiError(422, "invalid_request", str(e.errors())))

    async def bug(request: Request, e: Exception) -> JSONResponse:
        return _error_response(ApiError(500, "internal_error", "the server failed; its log says why"))

    app.add_exception_handler(ApiError, api_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, bug)


def _error_response(e: ApiError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    if e.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(e.body(), status_code=e.status, headers=headers)


async def page() -> HTMLResponse:
    """The web page (static/index.html)."""
    return HTMLResponse(_page(), headers={"Content-Security-Policy": PAGE_POLICY})


def _check_key(headers: Headers, api_key: str) -> None:
    given = headers.get("x-api-key")
    auth = headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if given is None or not hmac.compare_digest(given.encode(), api_key.encode()):
        raise ApiError(
            401, "unauthorized", "this server needs its API key: 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
        )


def _public(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k != "paths"}


def _page() -> str:
    return resources.files("seq2seq.serve").joinpath("static/index.html").read_text(encoding="utf-8")


def run_server(app: FastAPI, host: str, port: int, limits: Limits) -> None:
    """Serve ``app`` until SIGINT or SIGTERM; then uvicorn stops accepting, answers the
    requests in flight (waiting at most the request timeout and a little more), and the
    lifespan's end drains the batcher."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=int(limits.timeout) + 5,
        proxy_headers=False,
        access_log=False,  # /metrics counts requests; a line per request would cost under load
    )
    uvicorn.Server(config).run()
