"""seq2seq serve: a real uvicorn server on a free port. Most tests serve a scripted translator
(word reversal, with switches that hold a batch or fail a line) so that limits, batching and
errors are checked without a model; the slow ones serve a tiny trained model and compare with
unbatched Translator.translate, and stop a server process with SIGTERM mid-request."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY, data_overrides, write_toy_corpus

from seq2seq.errors import ConfigError, DataError, MissingExtraError
from seq2seq.outputs import PairScore, Translation
from seq2seq.serve.options import Limits, parse_model_specs

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from seq2seq.serve.app import create_app  # noqa: E402 (after the extra's check)

ROOT = Path(__file__).resolve().parents[1]


class Scripted:
    """A translator that reverses words. ``hold`` (when set) keeps each batch waiting until
    released; a line "FAIL" raises DataError, as a real translator does for a bad line, and
    "BUG" a RuntimeError, as a bug would; every
    call's line count is kept in ``calls``."""

    def __init__(self, name: str = "scripted") -> None:
        self.name = name
        self.calls: list[int] = []
        self.hold: threading.Event | None = None
        self.entered = threading.Event()

    def translate(
        self,
        lines: Sequence[str],
        beam_size: int | None = None,
        n_best: int | None = None,
        return_attention: bool = False,
    ) -> list[list[Translation]]:
        self.entered.set()
        if self.hold is not None:
            self.hold.wait(10)
        beam, n = beam_size or 2, n_best or 1
        if n > beam:
            raise ConfigError(f"n_best {n} is above beam_size {beam}")
        if "FAIL" in lines:
            raise DataError(f"line {lines.index('FAIL') + 1}: scripted failure")
        if "BUG" in lines:
            raise RuntimeError("a scripted bug")
        self.calls.append(len(lines))
        return [[self._hypothesis(line, k, return_attention) for k in range(n)] for line in lines]

    def _hypothesis(self, line: str, k: int, attention: bool) -> Translation:
        words = line.split()
        tokens = [*reversed(words), *(["alt"] * k)]
        weights = [[1.0 / (len(words) + 1)] * (len(words) + 1) for _ in range(len(tokens) + 1)]
        return Translation(
            text=" ".join(tokens),
            score=-1.0 - k,
            log_prob=-1.0 - k,
            tokens=tokens,
            token_log_probs=[(-1.0 - k) / (len(tokens) + 1)] * (len(tokens) + 1),
            source_tokens=words,
            attention=weights if attention else None,
        )

    def translate_iter(self, lines: Iterable[str], **kw: Any) -> Iterator[list[Translation]]:
        yield from self.translate(list(lines), **kw)

    def score(self, pairs: Iterable[tuple[str, str]]) -> list[PairScore]:
        raise NotImplementedError

    def source_lengths(self, lines: Sequence[str]) -> list[int]:
        return [len(line.split()) for line in lines]

    @property
    def info(self) -> dict[str, Any]:
        return {"name": self.name, "paths": ["/secret/path.pt"], "search": {"beam_size": 2}}


class Server:
    """A uvicorn server in a thread, on a free loopback port, and an HTTP client for it."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        return http_request(self.port, method, path, body, headers)

    def translate(self, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        status, _, body = self.request("POST", "/v1/translate", json.dumps(payload).encode(), headers)
        return status, json.loads(body)


def http_request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@contextmanager
def serving(
    limits: Limits | None = None, api_key: str | None = None, workers: int = 1, **translators: Any
) -> Iterator[Server]:
    app = create_app(translators or {"default": Scripted()}, limits or Limits(), api_key, workers)
    with Server(app) as server:
        yield server


def test_concurrent_requests_are_batched_and_get_their_own_results_in_order() -> None:
    scripted = Scripted()
    with serving(Limits(batch_wait_ms=200), default=scripted) as server:
        requests = [[f"a{i} b{i}", f"c{i}", f"d{i} e{i} f{i}"][: 1 + i % 3] for i in range(24)]
        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(lambda src: server.translate({"src": src}), requests))
    for src, (status, body) in zip(requests, answers):
        assert status == 200, body
        assert [t["text"] for t in body["translations"]] == [" ".join(reversed(s.split())) for s in src]
    assert sum(scripted.calls) == sum(map(len, requests))
    assert len(scripted.calls) < len(requests)  # some requests shared a batch


def test_a_batch_waits_for_the_previous_batchs_clients_only() -> None:
    """The first request waits batch_wait_ms for company; a lone client's next requests find
    the previous batch's one client back and start at once."""
    scripted = Scripted()
    with serving(Limits(batch_wait_ms=3000), default=scripted) as server:
        seconds = []
        for i in range(3):
            started = time.monotonic()
            status, body = server.translate({"src": [f"a{i} b{i}"]})
            assert status == 200, body
            seconds.append(time.monotonic() - started)
    assert seconds[0] >= 2.9
    assert max(seconds[1:]) < 1.5
    assert scripted.calls == [1, 1, 1]


def test_batches_group_by_model_and_search_settings() -> None:
    one, two = Scripted("one"), Scripted("two")
    with serving(Limits(batch_wait_ms=200), one=one, two=two) as server:
        payloads = [
            {"model": model, "src": [f"x{i} y{i}"], "beam_size": beam, "n_best": beam, "return_attention": att}
            for i, (model, beam, att) in enumerate(
                [(m, b, a) for m in ("one", "two") for b in (1, 3) for a in (False, True)] * 2
            )
        ]
        with ThreadPoolExecutor(len(payloads)) as pool:
            answers = list(pool.map(server.translate, payloads))
    for payload, (status, body) in zip(payloads, answers):
        assert status == 200, body
        assert body["model"] == payload["model"]
        hyps = body["translations"][0]["hypotheses"]
        assert len(hyps) == payload["n_best"]
        assert all(("attention" in h) == payload["return_attention"] for h in hyps)
    assert sum(one.calls) == sum(two.calls) == 8


def test_response_fields_follow_the_flags() -> None:
    with serving() as server:
        status, body = server.translate({"src": ["a b c"], "beam_size": 3, "n_best": 2, "return_attention": True})
        assert status == 200
        sentence = body["translations"][0]
        assert sentence["text"] == "c b a" and sentence["source_tokens"] == ["a", "b", "c"]
        best = sentence["hypotheses"][0]
        assert len(best["token_log_probs"]) == len(best["tokens"]) + 1
        assert len(best["attention"]) == len(best["tokens"]) + 1
        assert all(len(row) == len(sentence["source_tokens"]) + 1 for row in best["attention"])
        status, body = server.translate({"src": ["a b"], "return_scores": False})
        assert set(body["translations"][0]["hypotheses"][0]) == {"text", "tokens"}


BAD_REQUESTS = [
    (b'{"src": ["a"', 422, "invalid_json", "not JSON"),
    (b"[1, 2]", 422, "invalid_request", "valid dictionary"),
    (b'{"src": "a b"}', 422, "invalid_request", "src"),
    (b'{"src": ["a", 3]}', 422, "invalid_request", "src[1]"),
    (b'{"src": []}', 422, "invalid_request", "src"),
    (b'{"src": ["a"], "beam": 3}', 422, "invalid_request", "beam: Extra inputs"),
    (b'{"src": ["a"], "beam_size": "3"}', 422, "invalid_request", "beam_size"),
    (b'{"src": ["a"], "beam_size": 0}', 422, "invalid_request", "beam_size"),
    (b'{"src": ["a"], "return_attention": 1}', 422, "invalid_request", "return_attention"),
    (b'{"src": ["a\\nb"]}', 422, "invalid_request", "line break"),
    (b'{"src": ["a \\ud800"]}', 422, "invalid_request", "src[0]: surrogate"),
    (b'{"src": ["caf\xe9"]}', 422, "invalid_utf8", "not valid UTF-8"),
    (b'{"src": ["a"], "beam_size": 17}', 422, "beam_too_large", "limit of 16"),
    (b'{"src": ["a"], "beam_size": 2, "n_best": 3}', 422, "invalid_request", "n_best 3 is above beam_size 2"),
    (b'{"src": ["FAIL"]}', 422, "invalid_request", "scripted failure"),
    (b'{"src": ["BUG"]}', 500, "internal_error", "the server log says why"),
    (b'{"model": "nope", "src": ["a"]}', 404, "unknown_model", "no model 'nope'; this server has: default"),
    (json.dumps({"src": ["a"] * 65}).encode(), 413, "too_many_sentences", "at most 64"),
    (json.dumps({"src": ["a" * 2001]}).encode(), 413, "sentence_too_long", "src[0] has 2001 characters"),
    (b'{"src": ["' + b"a" * 2_000_000 + b'"]}', 413, "body_too_large", "request body is over"),
]


@pytest.mark.parametrize(
    "body, status, code, message", BAD_REQUESTS, ids=[f"{c}-{i}" for i, (_, _, c, _) in enumerate(BAD_REQUESTS)]
)
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(
    body: bytes, status: int, code: str, message: str
) -> None:
    with serving() as server:
        got, headers, raw = server.request("POST", "/v1/translate", body)
        assert got == status, raw
        assert headers["content-type"] == "application/json"
        error = json.loads(raw)["error"]
        assert error["code"] == code and message in error["message"], error
        status, answer = server.translate({"src": ["still here"]})
        assert status == 200 and answer["translations"][0]["text"] == "here still"
        assert server.request("GET", "/health")[0] == 200


def test_one_bad_line_fails_its_request_only() -> None:
    with serving(Limits(batch_wait_ms=300)) as server, ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(server.translate, [{"src": ["a b"]}, {"src": ["x", "FAIL"]}, {"src": ["c d"]}]))
    assert [status for status, _ in answers] == [200, 422, 200]
    assert answers[0][1]["translations"][0]["text"] == "b a" and answers[2][1]["translations"][0]["text"] == "d c"


def test_queue_full_timeout_and_health_while_decoding() -> None:
    scripted = Scripted()
    scripted.hold = threading.Event()
    limits = Limits(max_sentences=4, max_queued=4, timeout=1.0, batch_wait_ms=0)
    with serving(limits, default=scripted) as server, ThreadPoolExecutor(2) as pool:
        first = pool.submit(server.translate, {"src": ["decoding now"]})
        assert scripted.entered.wait(10)  # the worker holds the first batch
        status, _, body = server.request("GET", "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        queued = pool.submit(server.translate, {"src": ["w x", "y z", "q"]})
        deadline = time.monotonic() + 5
        while json.loads(server.request("GET", "/health")[2])["queued_sentences"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        status, body = server.translate({"src": ["one", "too many"]})
        assert status == 503 and body["error"]["code"] == "queue_full" and "limit 4" in body["error"]["message"]
        status, body = first.result()  # held past the timeout
        assert status == 504 and "1 s" in body["error"]["message"]
        assert queued.result()[0] == 504
        scripted.hold.set()
        assert server.translate({"src": ["free again"]})[0] == 200
        metrics = server.request("GET", "/metrics")[2].decode()
    assert 'status="503"' in metrics and 'status="504"' in metrics


def test_api_key() -> None:
    with serving(api_key="s3cret") as server:
        status, body = server.translate({"src": ["a"]})
        assert status == 401 and "API key" in body["error"]["message"]
        assert server.translate({"src": ["a"]}, {"Authorization": "Bearer wrong"})[0] == 401
        assert server.request("GET", "/v1/models")[0] == 401
        assert server.translate({"src": ["a"]}, {"Authorization": "Bearer s3cret"})[0] == 200
        assert server.translate({"src": ["a"]}, {"X-API-Key": "s3cret"})[0] == 200
        assert server.request("GET", "/health")[0] == 200  # only /v1/* is guarded
        assert server.request("GET", "/")[0] == 200


def test_models_page_docs_and_unknown_routes() -> None:
    with serving(one=Scripted("one"), two=Scripted("two")) as server:
        status, _, body = server.request("GET", "/v1/models")
        models = json.loads(body)
        assert status == 200 and models["default"] == "one"
        assert [m["id"] for m in models["models"]] == ["one", "two"]
        assert all("paths" not in m for m in models["models"])
        assert models["limits"] == Limits().as_dict()
        status, headers, page = server.request("GET", "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in headers["content-security-policy"]
        # Nothing fetched from elsewhere: no src/href/url() with a scheme or a protocol-relative URL.
        assert not re.search(rb"""(src|href)\s*=\s*["']?(\w+:|//)|url\(|@import""", page)
        for element in (b'id="src"', b'id="model"', b'id="beam"', b'id="submit"', b'id="results"'):
            assert element in page
        status, _, spec = server.request("GET", "/openapi.json")
        assert status == 200 and "/v1/translate" in json.loads(spec)["paths"]
        assert server.request("GET", "/docs")[0] == 200
        status, _, body = server.request("GET", "/nowhere")
        assert status == 404 and json.loads(body)["error"]["code"] == "http_error"


METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? (\S+)$')


def parse_metrics(text: str) -> dict[str, list[tuple[str, float]]]:
    """Check the text exposition format line by line; samples by metric name."""
    assert text.endswith("\n")
    samples: dict[str, list[tuple[str, float]]] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram") and name not in types
            types[name] = kind
        elif not line.startswith("# HELP "):
            match = METRIC_LINE.match(line)
            assert match, line
            name = match.group(1)
            assert re.sub(r"_(bucket|sum|count)$", "", name) in types or name in types, line
            samples.setdefault(name, []).append((match.group(2) or "", float(match.group(5))))
    return samples


def test_metrics_parse_and_count() -> None:
    with serving(Limits(batch_wait_ms=100)) as server:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(server.translate, [{"src": ["a", "b"]}] * 4))
        server.request("POST", "/v1/translate", b"{")
        server.request("BREW", "/pot-1")  # invented methods and paths count as "other"
        server.request("GET", "/pot-2")
        text = server.request("GET", "/metrics")[2].decode()
    samples = parse_metrics(text)
    requests = dict(samples["seq2seq_requests_total"])
    assert requests['{method="POST",path="/v1/translate",status="200"}'] == 4
    assert requests['{method="POST",path="/v1/translate",status="422"}'] == 1
    assert requests['{method="other",path="other",status="404"}'] == 1
    assert requests['{method="GET",path="other",status="404"}'] == 1
    assert dict(samples["seq2seq_sentences_total"])['{model="default"}'] == 8
    assert samples["seq2seq_queue_sentences"] == [("", 0.0)]
    for name, count in (("seq2seq_batch_sentences", None), ("seq2seq_request_seconds", 4)):
        buckets = [v for _, v in samples[f"{name}_bucket"]]
        assert buckets == sorted(buckets) and samples[f"{name}_bucket"][-1][0].endswith('le="+Inf"}')
        assert buckets[-1] == samples[f"{name}_count"][0][1] == (count or buckets[-1])
    assert sum(v for _, v in samples["seq2seq_batch_sentences_sum"]) == 8


def test_model_specs_and_limits_are_checked() -> None:
    assert parse_model_specs(["a.pt"]) == {"default": "a.pt"}
    assert parse_model_specs(["de=a.pt", "fr=runs/x=1/b.pt"]) == {"de": "a.pt", "fr": "runs/x=1/b.pt"}
    assert parse_model_specs(["runs/a=b.pt"]) == {"default": "runs/a=b.pt"}
    with pytest.raises(ConfigError, match="given twice; name each model"):
        parse_model_specs(["a.pt", "b.pt"])
    with pytest.raises(ConfigError, match="no path"):
        parse_model_specs(["de="])
    with pytest.raises(ConfigError, match="--max-beam: 0"):
        Limits(max_beam=0)
    with pytest.raises(ConfigError, match="--timeout"):
        Limits(timeout=0)
    with pytest.raises(ConfigError, match="--max-queued 8 is below --max-sentences 64"):
        Limits(max_queued=8)


def test_serve_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from seq2seq.serve import require_extra

    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(MissingExtraError, match=re.escape("pip install 'seq2seq-rnn[serve]'")):
        require_extra()
    from seq2seq.cli import main

    assert main(["serve", "--checkpoint", "nowhere.pt", "--max-beam", "0"]) == 2  # checked before loading


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--port", "70000"], "--port"),
        (["--timeout", "nan"], "--timeout"),
        (["--max-sentences", "100", "--max-queued", "50"], "--max-queued 50 is below --max-sentences 100"),
        (["--checkpoint", "b.pt"], "the model id 'default' is given twice"),
        (["--beam-size", "0"], "--beam-size"),
        (["--precision", "fp16"], "--precision"),
    ],
)
def test_serve_flags_are_checked_before_any_checkpoint_loads(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from seq2seq.cli import main

    assert main(["serve", "--checkpoint", "missing.pt", *flags]) == 2
    assert message in capsys.readouterr().err


def test_serve_search_flags_reach_the_translators(monkeypatch: pytest.MonkeyPatch) -> None:
    import seq2seq.api
    import seq2seq.serve.app
    from seq2seq.cli import main

    loaded: list[dict[str, Any]] = []
    monkeypatch.setattr(seq2seq.api.Translator, "load", lambda path, **kw: loaded.append({"path": path, **kw}))
    monkeypatch.setattr(seq2seq.serve.app, "create_app", lambda *args: None)
    monkeypatch.setattr(seq2seq.serve.app, "run_server", lambda *args: None)
    flags = ["--checkpoint", "a=x.pt", "--checkpoint", "b=y.pt", "--beam-size", "3", "--shortlist", "10"]
    assert main(["serve", *flags, "--precision", "fp32", "--threads", "1"]) == 0
    assert [d["path"] for d in loaded] == ["x.pt", "y.pt"]
    assert all(d["beam_size"] == 3 and d["shortlist"] == 10 and d["precision"] == "fp32" for d in loaded)
    assert all("n_best" not in d for d in loaded)  # unset flags keep each checkpoint's setting


# --- a tiny trained model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny attention model trained for a few seconds on the copy-and-reverse corpus."""
    from seq2seq.cli import main

    tmp = tmp_path_factory.mktemp("serve")
    corpus = write_toy_corpus(tmp / "corpus")
    run = tmp / "run"
    overrides = [*data_overrides(corpus), "--set", "model.decoder.type=bahdanau"]
    assert main(["train", TINY, "--run-dir", str(run), *overrides]) == 0
    return run / "best.pt"


LINES = ["ein zwei drei", "Hund Katze", "", "vier fünf sechs sieben acht", "Haus", "zehn neun acht sieben"]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_requests_equal_unbatched_translation(trained: Path, workers: int) -> None:
    from seq2seq.api import Translator

    translator = Translator.load(trained, device="cpu", threads=1)
    alone = {beam: [translator.translate([line], beam_size=beam)[0][0] for line in LINES] for beam in (1, 3)}
    requests = [(beam, LINES[i : i + 1 + i % 3]) for beam in (1, 3) for i in range(len(LINES))] * 2
    limits = Limits(batch_wait_ms=100)
    with serving(limits, workers=workers, default=translator) as server:
        with ThreadPoolExecutor(len(requests)) as pool:
            answers = list(pool.map(lambda r: server.translate({"src": r[1], "beam_size": r[0]}), requests))
        # The translator's own checks reach the client: status 422, naming the setting.
        status, body = server.translate({"src": LINES[:1], "beam_size": 2, "n_best": 3})
        assert status == 422 and "n_best" in body["error"]["message"]
    for (beam, src), (status, body) in zip(requests, answers):
        assert status == 200, body
        start = LINES.index(src[0])
        for got, want in zip(body["translations"], alone[beam][start : start + len(src)]):
            assert got["text"] == want.text
            assert got["hypotheses"][0]["tokens"] == want.tokens
            assert got["hypotheses"][0]["score"] == pytest.approx(want.score, abs=1e-4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_finishes_the_requests_in_flight(trained: Path, tmp_path: Path, workers: str) -> None:
    port = free_port()
    # A long batch wait keeps the requests queued when SIGTERM arrives.
    command = [sys.executable, "-m", "seq2seq", "serve", "--checkpoint", str(trained), "--port", str(port)]
    command += ["--batch-wait-ms", "1500", "--threads", "1", "--workers", workers]
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ})
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if http_request(port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        body = json.dumps({"src": LINES[:2]}).encode()
        with ThreadPoolExecutor(4) as pool:
            answers = [pool.submit(http_request, port, "POST", "/v1/translate", body) for _ in range(4)]
            while json.loads(http_request(port, "GET", "/health")[2])["queued_sentences"] < 8:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            results = [a.result(timeout=60) for a in answers]
        # uvicorn re-raises the signal once it has shut down: the process ends as SIGTERM's.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    for status, _, raw in results:
        assert status == 200, raw
        assert len(json.loads(raw)["translations"]) == 2
    assert "Finished server process" in (tmp_path / "server.log").read_text()


def test_load_test_script_reports_and_keeps_to_loopback() -> None:
    script = [sys.executable, str(ROOT / "scripts" / "load_test.py")]
    with serving() as server:
        url = f"http://127.0.0.1:{server.port}"
        done = subprocess.run(
            [*script, url, "--clients", "4", "--requests", "20", "--json"], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["ok"] == report["requests"] == 20 and report["statuses"] == {"200": 20}
        assert report["sentences_per_second"] > 0
        p50, p95, p99 = (report["latency_ms"][k] for k in ("p50", "p95", "p99"))
        assert 0 < p50 <= p95 <= p99
        done = subprocess.run([*script, url, "--clients", "2", "--requests", "3"], capture_output=True, text=True)
        assert done.returncode == 0 and "3/3 requests ok" in done.stdout and "sentences/s" in done.stdout
    for far in ("http://10.1.2.3:8000", "http://[2001:db8::1]:8000"):
        done = subprocess.run([*script, far, "--requests", "1"], capture_output=True, text=True)
        assert done.returncode != 0 and "only loopback servers" in done.stderr
    done = subprocess.run([*script, "http://127.0.0.1:1", "--clients", "5000"], capture_output=True, text=True)
    assert done.returncode == 2 and "--clients must be between 1 and 1024" in done.stderr
