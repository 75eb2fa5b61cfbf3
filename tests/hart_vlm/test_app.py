"""The chat page (hart_vlm.app, issue 41): its conversation logic without a browser, and the page
itself in Debian's Chromium driven by Playwright."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hart_vlm.app import Conversation, Settings

from .conftest import CHROMIUM, launch_chromium, random_image

HAS_GRADIO = importlib.util.find_spec("gradio") is not None


@pytest.mark.parametrize("bad", [dict(cfg=math.nan), dict(cfg=-1.0), dict(temperature=math.inf), dict(seed=-1),
                                 dict(seed="abc"), dict(seed=2**70), dict(seed=1.5), dict(cfg="3")])
def test_settings_name_the_bad_value(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Settings(**bad)


def test_a_conversation_streams_keeps_its_pictures_and_offers_the_story(tiny_model, tmp_path):
    chat = Conversation(tmp_path)
    with pytest.raises(ValueError, match="type a message"):
        next(chat.ask(tiny_model, "  ", random_image(0), Settings()))
    assert chat.messages == [] and chat.shown == []
    updates = list(chat.ask(tiny_model, "Draw a red chair.", None, Settings(seed=1)))
    assert len(updates) >= 2 and updates[-1] == chat.shown
    pictures = [m for m in chat.shown if isinstance(m["content"], dict)]
    assert len(pictures) == 1 and Path(pictures[0]["content"]["path"]).is_file()
    assert [Path(p).name for p in chat.downloads] == ["index.html", "storyboard.png"]
    assert any(part["type"] == "image" for part in chat.messages[-1]["content"])  # the next turn sees it
    # a question about an uploaded picture is answered in text; the picture is shown in the user's turn
    list(chat.ask(tiny_model, "What is shown in this image?", random_image(1), Settings(temperature=0.0)))
    last_turn = chat.shown[len(updates[-1]):]
    assert last_turn[0]["role"] == "user" and "path" in last_turn[0]["content"]
    assert all(isinstance(m["content"], str) for m in last_turn[2:]) and chat.downloads == []
    assert len(chat.messages) == 4


@pytest.mark.skipif(not HAS_GRADIO, reason='needs Gradio (pip install "hart-vlm[ui]")')
def test_the_page_is_built_around_the_model(tiny_model):
    from hart_vlm.app import build_app

    ids = {getattr(block, "elem_id", None) for block in build_app(tiny_model).blocks.values()}
    assert {"chat", "message", "story"} <= ids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and HAS_GRADIO and importlib.util.find_spec("playwright") is not None),
    reason=f"needs {CHROMIUM} (apt-get install chromium), Gradio and playwright (pip install 'hart-vlm[ui]' playwright)",
)
def test_the_chat_page_in_a_real_browser_draws_a_picture_per_step(tmp_path):
    from playwright.sync_api import sync_playwright

    port = _free_port()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "-m", "hart_vlm.app", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.time() < deadline, "the chat page did not start within 120 s"
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 1300})
                page.goto(url, wait_until="load")
                box = page.locator("#message textarea")
                box.wait_for(timeout=60_000)
                box.fill("Show me, step by step, how to put together a small oak stool.")
                box.press("Enter")
                # the story's files appear once the answer is complete
                page.locator("#story").get_by_text("storyboard").first.wait_for(timeout=120_000)
                text = page.locator("#chat").inner_text()
                steps = re.findall(r"Step \d+:", text)
                assert len(steps) >= 2 and "Overview:" in text
                images = page.locator("#chat img")
                assert images.count() == len(steps)
                widths = page.eval_on_selector_all("#chat img", "imgs => imgs.map(i => i.naturalWidth)")
                assert all(w == 128 for w in widths), widths
                page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
                # a picture sent without a question is refused with an error in the page; the page keeps working
                random_image(0).save(tmp_path / "upload.png")
                page.locator("#message input[type=file]").set_input_files(str(tmp_path / "upload.png"))
                page.wait_for_timeout(500)
                box.press("Enter")
                page.get_by_text("type a message").first.wait_for(timeout=30_000)
                box.fill("Draw a red chair.")
                page.locator("#chat").evaluate("el => el.dataset.before = el.querySelectorAll('img').length")
                box.press("Enter")
                page.wait_for_function(
                    "() => document.querySelectorAll('#chat img').length > Number("
                    "document.querySelector('#chat').dataset.before)", timeout=60_000)
            finally:
                browser.close()
        assert server.poll() is None  # still serving
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (tmp_path / "chat.png").stat().st_size > 0
