"""The server's limits (``seq2seq serve --max-...``) and its models (``--checkpoint [ID=]PATH``),
checked before any checkpoint is loaded. Standard library only."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from seq2seq.errors import ConfigError

DEFAULT_MODEL = "default"
API_KEY_VARIABLE = "SEQ2SEQ_API_KEY"  # when set, /v1/* asks for this key
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Limits:
    """What one request may ask and how the server batches; each field is the flag of its name
    (``max_sentences`` is ``--max-sentences``).

    max_sentences: sentences per request (more: 413).
    max_chars: characters (code points) per sentence (more: 413).
    max_beam: the largest beam_size a request may ask for (more: 422).
    max_queued: sentences waiting for a batch, all requests together (more: 503).
    timeout: seconds a request may wait for its translations, queueing included (then 504).
    batch_wait_ms: how long the first sentence of a batch waits for others to join it.
    batch_tokens: source pieces per batch: a batch closes once it holds this many.
    """

    max_sentences: int = 64
    max_chars: int = 2000
    max_beam: int = 16
    max_queued: int = 2048
    timeout: float = 60.0
    batch_wait_ms: float = 5.0
    batch_tokens: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_sentences", "max_chars", "max_beam", "max_queued", "batch_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{_flag(name)}: {value!r}: must be an integer >= 1")
        if not 0 < self.timeout < 86_400:
            raise ConfigError(f"--timeout: {self.timeout!r}: must be seconds, above 0 and below a day")
        if not 0 <= self.batch_wait_ms <= 10_000:
            raise ConfigError(f"--batch-wait-ms: {self.batch_wait_ms!r}: must be between 0 and 10000")
        if self.max_queued < self.max_sentences:
            raise ConfigError(
                f"--max-queued {self.max_queued} is below --max-sentences {self.max_sentences}: "
                "a request of the largest size could never be queued"
            )

    @property
    def max_body_bytes(self) -> int:
        """The largest request body worth reading: every sentence at its longest, each
        character escaped in JSON (``\\uXXXX``, 6 bytes), plus room for the other fields."""
        return self.max_sentences * (6 * self.max_chars + 8) + 4096

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def parse_model_specs(specs: Sequence[str]) -> dict[str, str]:
    """``--checkpoint`` values -> {model id: path}, in the order given (the first is the
    default model). ``ID=PATH`` names a model; one plain ``PATH`` is the model ``default``."""
    models: dict[str, str] = {}
    for spec in specs:
        model_id, sep, path = spec.partition("=")
        if not sep or not _MODEL_ID.fullmatch(model_id):
            model_id, path = DEFAULT_MODEL, spec
        if not path:
            raise ConfigError(f"--checkpoint {spec!r}: no path after '='")
        if model_id in models:
            hint = "name each model: --checkpoint ID=PATH" if model_id == DEFAULT_MODEL else "give each its own ID"
            raise ConfigError(f"--checkpoint: the model id {model_id!r} is given twice; {hint}")
        models[model_id] = path
    if not models:
        raise ConfigError("--checkpoint: give at least one checkpoint")
    return models


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) reaches this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
