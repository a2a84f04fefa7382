"""The JSON of ``POST /v1/translate``: the request read and checked (clear errors for a body
that is too big, not UTF-8, not JSON, of the wrong shape or past a limit) and the answer
written from the translator's :class:`~seq2seq.outputs.Translation` objects."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from seq2seq.outputs import Translation
from seq2seq.serve.options import Limits


class ApiError(Exception):
    """An answer other than 200: the status, a short machine-readable code and a message
    that says what to change. Sent as ``{"error": {"code": ..., "message": ...}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class TranslateRequest(BaseModel):
    """The body of ``POST /v1/translate``."""

    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=())

    model: str | None = Field(None, description="a model id of GET /v1/models; default: the first")
    src: list[str] = Field(..., min_length=1, description="source sentences, one per item, raw text")
    beam_size: int | None = Field(None, ge=1, description="1: greedy search; default: the model's")
    n_best: int | None = Field(None, ge=1, description="hypotheses per sentence, at most beam_size")
    return_scores: bool = Field(True, description="add score, log_prob and token_log_probs")
    return_attention: bool = Field(False, description="add the attention matrix of each hypothesis")


class Hypothesis(BaseModel):
    text: str
    tokens: list[str]
    score: float | None = None
    log_prob: float | None = None
    token_log_probs: list[float] | None = Field(None, description="len(tokens) + 1: the last is EOS's")
    attention: list[list[float]] | None = Field(
        None, description="(len(tokens) + 1) rows of len(source_tokens) + 1 weights; EOS last on both sides"
    )


class SentenceResult(BaseModel):
    text: str = Field(..., description="the best hypothesis' text")
    source_tokens: list[str]
    hypotheses: list[Hypothesis] = Field(..., description="best first")


class TranslateResponse(BaseModel):
    model: str
    translations: list[SentenceResult] = Field(..., description="one per src item, in order")


class ErrorResponse(BaseModel):
    error: dict[str, str]


async def read_body(chunks: AsyncIterator[bytes], declared_length: str | None, limits: Limits) -> bytes:
    """The request body, refused (413) as soon as it is longer than any acceptable request."""
    limit = limits.max_body_bytes
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise _too_big(limit)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise _too_big(limit)
    return bytes(body)


def _too_big(limit: int) -> ApiError:
    return ApiError(
        413, "body_too_large", f"the request body is over {limit} bytes, more than any request within limits"
    )


def parse_request(body: bytes, limits: Limits) -> TranslateRequest:
    """Check ``body`` as a translate request; :class:`ApiError` (422 or 413) says what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(
            422, "invalid_utf8", f"the request body is not valid UTF-8 ({e.reason} at byte {e.start})"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(
            422, "invalid_json", f"the request body is not JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    try:
        request = TranslateRequest.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{_where(err['loc'])}: {err['msg']}" for err in e.errors(include_url=False)[:5])
        raise ApiError(422, "invalid_request", problems) from None
    if len(request.src) > limits.max_sentences:
        raise ApiError(
            413,
            "too_many_sentences",
            f"src has {len(request.src)} sentences; this server takes at most {limits.max_sentences} per request",
        )
    for i, line in enumerate(request.src):
        if len(line) > limits.max_chars:
            raise ApiError(
                413,
                "sentence_too_long",
                f"src[{i}] has {len(line)} characters; this server takes at most {limits.max_chars}",
            )
        if "\n" in line or "\r" in line:
            raise ApiError(422, "invalid_request", f"src[{i}] contains a line break; send one sentence per item")
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate, which JSON's \ud800 escapes allow
            raise ApiError(422, "invalid_request", f"src[{i}]: {e.reason} at character {e.start}") from None
    if request.beam_size is not None and request.beam_size > limits.max_beam:
        raise ApiError(
            422, "beam_too_large", f"beam_size {request.beam_size} is above this server's limit of {limits.max_beam}"
        )
    return request


def _where(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".") or "body"


def response_body(model: str, results: list[list[Translation]], scores: bool, attention: bool) -> dict[str, Any]:
    """The answer to a translate request: per sentence its best text and n-best list."""

    def hypothesis(t: Translation) -> dict[str, Any]:
        out: dict[str, Any] = {"text": t.text, "tokens": t.tokens}
        if scores:
            out |= {"score": t.score, "log_prob": t.log_prob, "token_log_probs": t.token_log_probs}
        if attention:
            out["attention"] = t.attention
        return out

    return {
        "model": model,
        "translations": [
            {
                "text": n_best[0].text,
                "source_tokens": n_best[0].source_tokens,
                "hypotheses": [hypothesis(t) for t in n_best],
            }
            for n_best in results
        ],
    }
