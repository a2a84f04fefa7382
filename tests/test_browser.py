"""The page at ``/`` in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by selenium against a server this test starts on a tiny trained model.
It types a sentence, submits, and waits for the translation, its n-best list and the attention
heatmap. Skipped where Chromium is missing, except under CI=true, where that is a failure.

``SEQ2SEQ_SCREENSHOT=docs/serve_page.png python -m pytest tests/test_browser.py`` also saves
the page as that PNG (the model then trains longer, for a translation worth showing);
``SEQ2SEQ_SERVE_CHECKPOINT=CKPT`` serves that checkpoint instead of training one."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY, data_overrides, write_toy_corpus

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SENTENCE = "ein zwei drei Hund"


def require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = f"headless browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server on a free loopback port serving a tiny attention model trained here."""
    require_browser()
    pytest.importorskip("fastapi")
    uvicorn = pytest.importorskip("uvicorn")
    from seq2seq.api import Translator
    from seq2seq.cli import main
    from seq2seq.serve.app import create_app
    from seq2seq.serve.options import Limits

    checkpoint = os.environ.get("SEQ2SEQ_SERVE_CHECKPOINT")  # a better-trained model, for the screenshot
    if not checkpoint:
        tmp = tmp_path_factory.mktemp("browser")
        corpus = write_toy_corpus(tmp / "corpus")
        overrides = [*data_overrides(corpus), "--set", "model.decoder.type=bahdanau"]
        if os.environ.get("SEQ2SEQ_SCREENSHOT"):
            overrides += ["--set", "training.max_steps=200"]
        assert main(["train", TINY, "--run-dir", str(tmp / "run"), *overrides]) == 0
        checkpoint = str(tmp / "run" / "best.pt")
    translator = Translator.load(checkpoint, device="cpu", threads=1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app({"toy": translator}, Limits()), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(20)
    sock.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1100,900",
    ):
        options.add_argument(flag)
    # The driver's path is given, so selenium-manager never looks for (or downloads) one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow
def test_page_translates_and_draws_the_attention(server_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(server_url)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    assert [o.text for o in Select(browser.find_element(By.ID, "model")).options] == ["toy"]
    Select(browser.find_element(By.ID, "beam")).select_by_value("3")
    nbest = browser.find_element(By.ID, "nbest")
    nbest.clear()
    nbest.send_keys("2")
    browser.find_element(By.ID, "src").send_keys(SENTENCE)
    browser.find_element(By.ID, "submit").click()

    heatmap = wait.until(ready.presence_of_element_located((By.ID, "heatmap-0")))
    assert "error" not in browser.find_element(By.ID, "status").get_attribute("class")
    translation = browser.find_element(By.ID, "translation-0").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#nbest-0 tr")[1:]
    assert len(rows) == 2 and rows[0].find_elements(By.TAG_NAME, "td")[1].text == translation
    scores = [float(row.find_elements(By.TAG_NAME, "td")[2].text) for row in rows]
    assert scores == sorted(scores, reverse=True)
    # One row per target piece plus EOS, one cell per source piece plus EOS, each coloured.
    body_rows = heatmap.find_elements(By.CSS_SELECTOR, "tbody tr")
    target_pieces = [row.find_element(By.TAG_NAME, "th").text for row in body_rows]
    assert target_pieces[-1] == "</s>"
    assert "".join(target_pieces[:-1]).replace("\u2581", " ").strip() == translation  # SentencePiece's ▁ is a space
    source_pieces = heatmap.find_elements(By.CSS_SELECTOR, "thead th")[1:]
    assert source_pieces[-1].text == "</s>"
    cells = body_rows[0].find_elements(By.TAG_NAME, "td")
    assert len(cells) == len(source_pieces)
    assert all("background" in (cell.get_attribute("style") or "") for cell in cells)
    weights = [float(cell.get_attribute("title")) for cell in cells]
    assert sum(weights) == pytest.approx(1.0, abs=0.01)

    screenshot = os.environ.get("SEQ2SEQ_SCREENSHOT")
    if screenshot:
        height = browser.execute_script("return document.documentElement.scrollHeight")
        metrics = {"width": 1000, "height": height, "deviceScaleFactor": 1, "mobile": False}
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # the whole page, no scroll bar
        assert browser.save_screenshot(str(Path(screenshot).resolve()))
