"""The app in a real browser: a real Voilà server (what `huggingtweets demo` runs) driven through Debian's Chromium.

One walk through the three steps, as a user would: a broken upload shows a one-line error; the real archive
gives the counts table and figure; training the tiny model fills the progress bar and draws the loss curve;
generation shows post cards labelled AI-generated. A screenshot is left in test-artifacts/dashboard.png.

Needs /usr/bin/chromium (`apt-get update && apt-get install -y chromium`). Marked `browser` for selection
(`pytest -m browser`, `-m "not browser"`); it runs by default. About 40 s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from huggingtweets import demo

from conftest import free_port, voila_server

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SECRET = "AAAA-browser-secret-token-42"
STEPS = 30
UPLOAD_MB = 2


@pytest.fixture(scope="module")
def voila(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> Iterator[str]:
    """A Voilà server on 127.0.0.1 serving the demo notebook, pointed at the tiny model; its URL."""
    folder = tmp_path_factory.mktemp("voila")
    env = {
        **os.environ,
        "HUGGINGTWEETS_HOME": str(folder / "home"),
        "HUGGINGTWEETS_BASE_MODEL": str(tiny_llama),
        "HUGGINGTWEETS_MAX_STEPS": str(STEPS),
        "HUGGINGTWEETS_DATA": "",
        "TOKENIZERS_PARALLELISM": "false",
        # Small, so the server's bound can be shown with small messages (the real archive's zip is 0.4 MB).
        "HUGGINGTWEETS_MAX_UPLOAD_MB": str(UPLOAD_MB),
    }
    port = free_port()
    notebook = demo.find_notebook()
    command = demo.command(notebook, port=port, open_browser=False, ip="127.0.0.1")
    with voila_server(command, port, env=env, cwd=notebook.parent, log=folder / "voila.log"):
        yield f"http://127.0.0.1:{port}/"


@pytest.fixture()
def page(voila: str) -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get update && apt-get install -y chromium`")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(voila, timeout=60_000)
            yield page
        finally:
            browser.close()


def screenshot(page: object, name: str) -> None:
    # Voilà scrolls inside its own container, so a "full page" is the viewport: make it as tall as the app.
    height = page.evaluate("(document.querySelector('.ht-app') || document.body).scrollHeight")  # type: ignore[attr-defined]
    page.set_viewport_size({"width": 1280, "height": max(1000, int(height) + 100)})  # type: ignore[attr-defined]
    page.screenshot(path=str(ARTIFACTS / name))  # type: ignore[attr-defined]


def upload(page: object, file: Path) -> None:
    """Set a file on the FileUpload's <input type=file>, which the widget keeps outside the DOM: clicking the
    button opens it, and Playwright hands us that input instead of a file dialog."""
    with page.expect_file_chooser() as chooser:  # type: ignore[attr-defined]
        page.locator(".ht-data .widget-upload").click()  # type: ignore[attr-defined]
    chooser.value.element.set_input_files(str(file))


def test_dashboard_data_train_generate(page: object, archive_zip: Path, tmp_path: Path) -> None:
    try:
        walk_through(page, archive_zip, tmp_path)
    except BaseException:
        screenshot(page, "dashboard-failure.png")  # the page as the failure left it
        raise
    screenshot(page, "dashboard.png")
    # Another visitor of the same server, while the first is still there: a browser context of its own (no shared
    # cookies or storage), so a page, a kernel and a session of its own.
    other = page.context.browser.new_context().new_page()  # type: ignore[attr-defined]
    try:
        other.goto(page.url, timeout=60_000)  # type: ignore[attr-defined]
        second_visitor(other, tmp_path)
    except BaseException:
        screenshot(other, "dashboard-second-visitor-failure.png")
        raise


def second_visitor(page: object, tmp_path: Path) -> None:
    """Sees none of the first visitor's uploads or bots; an upload over the limit is refused in one line by the
    kernel, and a message over the server's bound never reaches the kernel."""
    from playwright.sync_api import expect

    data, train = page.locator(".ht-data"), page.locator(".ht-train")  # type: ignore[attr-defined]
    expect(data).to_be_visible(timeout=90_000)
    expect(data).to_contain_text("no file uploaded")
    options = train.locator("select option")
    expect(options.first).to_be_attached()
    assert not [o for o in options.all_inner_texts() if "milahu104" in o], options.all_inner_texts()

    big = tmp_path / "big.txt"
    big.write_bytes(b"one two three four five\n" * int(UPLOAD_MB * 1.25 * 2**20 / 24))  # over the limit, under the bound
    upload(page, big)
    expect(data.locator(".ht-error")).to_contain_text(f"big.txt is 2 MB, over the {UPLOAD_MB} MB limit")
    expect(data).to_contain_text("no file uploaded")

    # The same kernel_info_request to this page's kernel, padded to under and to over the server's bound.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUGGINGTWEETS_MAX_UPLOAD_MB", str(UPLOAD_MB))  # as the server has it
        bound = demo.websocket_max_message_bytes()
    assert bound < 10 * 2**20  # under tornado's default: a "closed" below shows the server applies the app's bound
    assert page.evaluate(KERNEL_REQUEST, bound // 2) == "reply"  # type: ignore[attr-defined]
    # Tornado answers "message too big" (1009) and drops the connection; when the drop lands while the browser is
    # still sending the rest of the frame, the browser sees the socket reset (1006) instead. Either way the message
    # never reached the kernel, and the kernel still answers the next request.
    assert page.evaluate(KERNEL_REQUEST, bound + 2**20) in ("closed 1009", "closed 1006")  # type: ignore[attr-defined]
    assert page.evaluate(KERNEL_REQUEST, 1) == "reply"  # type: ignore[attr-defined]


# A second websocket to the page's kernel (Jupyter's JSON message format), sending one kernel_info_request with
# `pad` bytes in its metadata: "reply" when the kernel answered it, "closed CODE" when the server closed the socket.
KERNEL_REQUEST = """async (pad) => {
  const config = JSON.parse(document.getElementById('jupyter-config-data').textContent);
  const url = location.origin.replace(/^http/, 'ws') + config.baseUrl + 'api/kernels/' + config.kernelId + '/channels';
  const id = 'size-check-' + pad;
  const message = {
    header: {msg_id: id, msg_type: 'kernel_info_request', session: 'size-check', username: '', version: '5.3',
             date: new Date().toISOString()},
    parent_header: {}, metadata: {pad: 'x'.repeat(pad)}, content: {}, channel: 'shell', buffers: [],
  };
  return await new Promise((resolve) => {
    const socket = new WebSocket(url);
    const timer = setTimeout(() => { resolve('no answer'); socket.close(); }, 30000);
    socket.onopen = () => socket.send(JSON.stringify(message));
    socket.onmessage = (event) => {
      const reply = JSON.parse(event.data);
      if (reply.parent_header && reply.parent_header.msg_id === id && reply.msg_type === 'kernel_info_reply') {
        clearTimeout(timer); resolve('reply'); socket.close();
      }
    };
    socket.onclose = (event) => { clearTimeout(timer); resolve('closed ' + event.code); };
  });
}"""


def walk_through(page: object, archive_zip: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    data, train, generate = (page.locator(f".ht-{name}") for name in ("data", "train", "generate"))  # type: ignore[attr-defined]
    expect(data).to_be_visible(timeout=90_000)  # Voilà runs the notebook first (imports torch and transformers)

    # The X token goes in a password field.
    token = data.locator("input[type=password]")
    token.fill(SECRET)
    token.press("Tab")
    # The kernel took it and emptied the field, so the widget state Jupyter saves holds no token.
    expect(token).to_have_value("")
    expect(token).to_have_attribute("placeholder", re.compile("token set for this session"))
    # It can be forgotten; the button shows only while there is a typed token.
    forget = data.get_by_role("button", name="Forget token")
    forget.click()
    expect(token).to_have_attribute("placeholder", re.compile("never shown or stored"))
    expect(forget).to_be_hidden()

    # A broken file: one readable line under step 1, no traceback.
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"this is not a zip file")
    upload(page, broken)
    expect(data.locator(".ht-status")).to_contain_text("uploaded broken.zip")
    data.get_by_role("button", name="Fetch").click()
    error = data.locator(".ht-error")
    expect(error).to_have_text("⚠ broken.zip is not a valid zip file: download the archive again")
    assert "Traceback" not in data.inner_text()

    # The real archive, replies kept: the counts table and the figure.
    data.get_by_role("button", name="Clear uploads").click()
    upload(page, archive_zip)
    expect(data.locator(".ht-status")).to_contain_text(f"uploaded {archive_zip.name}")
    data.get_by_label("keep replies").check()
    data.get_by_role("button", name="Fetch").click()
    table = data.locator("table.ht-counts")
    expect(table).to_be_visible(timeout=60_000)
    expect(error).to_be_hidden()
    headers = table.locator("th").all_inner_texts()
    assert headers[:7] == ["account", "read", "retweets", "replies", "short", "duplicates", "kept"]
    expect(table.locator("tbody tr").first).to_contain_text("milahu104")
    expect(data.locator(".ht-status")).to_contain_text("posts kept of 2,045 read")
    expect(data.locator(".ht-data-figure")).to_be_visible()

    # Training: the bar fills, the loss curve appears, the bot is saved.
    train.get_by_role("button", name="Train").click()
    bar = train.locator(".ht-progress .progress-bar")
    expect(bar).to_have_attribute("style", re.compile(r"width: 100%"), timeout=120_000)
    expect(train.locator(".ht-status")).to_contain_text("saved milahu104", timeout=60_000)
    expect(bar).to_have_class(re.compile("progress-bar-success"))
    expect(train.get_by_role("button", name="Stop")).to_be_disabled()
    loss = train.locator(".ht-loss")
    expect(loss).to_be_visible()
    assert loss.evaluate("img => img.naturalWidth") > 100  # a real PNG, drawn

    # Generation: post cards, each labelled AI-generated, and the downloads.
    posts = generate.locator(".widget-inline-hbox", has_text="posts").locator("input")
    posts.fill("3")
    posts.press("Enter")
    stop = generate.get_by_role("button", name="Stop")
    expect(stop).to_be_disabled()  # nothing to stop yet
    generate.get_by_role("button", name="Generate").click()
    expect(generate.locator(".ht-status")).to_contain_text("3 posts in", timeout=60_000)
    expect(stop).to_be_disabled()
    cards = generate.locator(".ht-post")
    expect(cards).to_have_count(3)
    expect(generate.locator(".ht-post .ht-ai")).to_have_text(["AI-generated"] * 3)
    expect(generate.locator(".ht-downloads a")).to_have_count(2)
    assert SECRET not in page.content()  # type: ignore[attr-defined]  # not in any status line, error or post
