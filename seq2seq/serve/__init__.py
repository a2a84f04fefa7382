"""Translation over HTTP: ``seq2seq serve``.

:mod:`~seq2seq.serve.options` holds the server's limits and reads ``--checkpoint ID=PATH``;
:mod:`~seq2seq.serve.batcher` gathers the sentences of concurrent requests into batches that
one worker thread decodes; :mod:`~seq2seq.serve.metrics` counts for ``GET /metrics``;
:mod:`~seq2seq.serve.app` has the routes and runs uvicorn. FastAPI and uvicorn are the
optional extra ``serve``: :func:`require_extra` says how to install them.
"""

from __future__ import annotations

from seq2seq.errors import MissingExtraError

INSTALL_HINT = "pip install 'seq2seq-rnn[serve]'"


def require_extra() -> None:
    """Raise :class:`MissingExtraError` naming the extra when FastAPI or uvicorn is missing."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise MissingExtraError(f"{e.name or 'fastapi'} is not installed: {INSTALL_HINT}") from None
