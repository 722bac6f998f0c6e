"""The page (/ui, /test) and offline /docs + /redoc in a real headless Chromium, real gateway + Triton.

Debian's chromium (scripts/system-deps.sh) driven by Playwright's Python package; Playwright's own browser
download is never used. Every request the browser makes is recorded: none may leave the gateway's origin.
Screenshots go to reports/ (the README shows reports/ui-seed-file.png).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from gateway.app import create_app
from gateway.embedded import EmbeddedTriton, free_port
from gateway.settings import Settings
from tests.conftest import seed_data_path
from tests.integration.conftest import make_settings

pytestmark = pytest.mark.integration

REPORTS = Path(__file__).resolve().parents[2] / "reports"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DONE = "#status.done, #status.error"


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The gateway on a real loopback port (a browser needs one), served by uvicorn in a thread."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.PORT, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.PORT}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def live_gateway(triton: EmbeddedTriton, redis_url: str, model_repo: Path) -> Iterator[str]:
    with serving(make_settings(triton.grpc_url, redis_url, model_repo, PORT=free_port())) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run scripts/system-deps.sh (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        yield b
        b.close()


@contextlib.contextmanager
def recording_page(browser: Any, base: str) -> Iterator[Any]:
    """A 1280-px-wide page that records every request; on exit, none may have left the origin."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    # A request the page's Content-Security-Policy refused never left the browser (ReDoc's footer asks
    # for a logo on its CDN): it is recorded, and allowed only with that failure.
    blocked: set[str] = set()
    context.on(
        "requestfailed", lambda r: r.failure in ("csp", "net::ERR_BLOCKED_BY_CSP") and blocked.add(r.url)
    )
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(60_000)
    yield pg
    pg.wait_for_timeout(200)  # let a last refused request report its failure
    context.close()
    foreign = [u for u in requests if not u.startswith((base + "/", "blob:", "data:")) and u not in blocked]
    assert requests and not foreign, f"requests left the origin: {foreign[:5]}"
    assert not errors, errors


@pytest.fixture
def page(browser: Any, live_gateway: str) -> Iterator[Any]:
    with recording_page(browser, live_gateway) as pg:
        yield pg


def _shot(pg: Any, name: str, selector: str | None = None) -> None:
    REPORTS.mkdir(exist_ok=True)
    target = pg.locator(selector) if selector else pg
    target.screenshot(path=str(REPORTS / name))


def _api(base: str, data: bytes, **params: str) -> dict[str, Any]:
    resp = httpx.post(
        f"{base}/v1/detect",
        params=params,
        content=data,
        headers={"content-type": "application/x-npy"},
        timeout=300,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def _drawn(pg: Any) -> dict[int, tuple[int, int, int]]:
    """Per plotted signal: (regions and rejected candidates the page says it drew, rectangles in the SVG)."""
    rows = pg.evaluate(
        """() => [...document.querySelectorAll('.signal .plot')].map(d => [Number(d.id.slice(5)),
            Number(d.dataset.regionsDrawn), Number(d.dataset.rejectedDrawn),
            d.querySelectorAll('.shapelayer path').length])"""
    )
    return {i: (n, rej, svg) for i, n, rej, svg in rows}


def _expected(result: dict[str, Any]) -> tuple[int, int, int]:
    """What the page must draw for one API result (asked with include_rejected): its regions, then its
    rejected candidates in grey, one rectangle each."""
    n, rej = result["num_regions_detected"], len(result.get("rejected") or [])
    return n, rej, n + rej


def test_seed_file_regions_and_prpd_equal_the_api(
    page: Any, live_gateway: str, seed_data: np.ndarray
) -> None:
    page.goto(f"{live_gateway}/ui")
    page.wait_for_selector("#example option[value='vsb-800k']", state="attached")
    page.set_input_files("#file", str(seed_data_path()))
    page.wait_for_selector(DONE, timeout=240_000)
    assert "error" not in page.get_attribute("#status", "class"), page.inner_text("#status")
    api = _api(
        live_gateway, seed_data_path().read_bytes(), include_probability="true", include_rejected="true"
    )

    drawn = _drawn(page)
    assert sorted(drawn) == [r["sample_index"] for r in api["results"]]
    for r in api["results"]:
        assert drawn[r["sample_index"]] == _expected(r)
    with_phase = sum(g["phase_deg"] is not None for r in api["results"] for g in r["regions"])
    rejected = sum(g["phase_deg"] is not None for r in api["results"] for g in r["rejected"] or [])
    assert with_phase > 0
    assert page.get_attribute("#prpd", "data-points") == str(with_phase)
    assert page.get_attribute("#prpd", "data-rejected") == str(rejected)
    assert page.locator("#prpd .scatterlayer .trace .points path").count() == with_phase + rejected
    assert page.locator("#regions tbody tr").count() == api["total_regions"]
    _shot(page, "ui-seed-file.png")

    # Keyboard only: tab to the first region row, Enter highlights it on signal 0's plot.
    first = api["results"][0]["regions"][0]
    page.focus("#regions tbody tr")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('plot-0').dataset.highlighted")
    assert page.get_attribute("#plot-0", "data-highlighted") == f"{first['start']}-{first['end']}"
    _shot(page, "ui-region-selected.png", "#signal-0")


def test_csv_and_ragged_json_uploads_equal_the_api(page: Any, live_gateway: str, tmp_path: Path) -> None:
    raw = httpx.get(f"{live_gateway}/v1/examples/seed-regime", timeout=60).content
    rows = np.load(io.BytesIO(raw)).astype(np.float64)[:3]
    csv = tmp_path / "three.csv"
    np.savetxt(csv, rows, delimiter=",")  # one signal per row, exact float64 text
    ragged = {"signals": [rows[0][:5000].tolist(), rows[1].tolist()]}
    (tmp_path / "ragged.json").write_text(json.dumps(ragged))
    buf = io.BytesIO()
    np.save(buf, rows)
    expected_csv = _api(live_gateway, buf.getvalue(), include_rejected="true")
    expected_json = httpx.post(
        f"{live_gateway}/v1/detect", json={**ragged, "include_rejected": True}, timeout=300
    ).json()
    page.goto(f"{live_gateway}/ui")
    page.wait_for_selector("#example option[value='seed-regime']", state="attached")
    for name, expected in (("three.csv", expected_csv), ("ragged.json", expected_json)):
        page.evaluate("() => { document.getElementById('status').className = 'status idle'; }")
        page.set_input_files("#file", str(tmp_path / name))
        page.wait_for_selector(DONE, timeout=240_000)
        assert "error" not in page.get_attribute("#status", "class"), page.inner_text("#status")
        assert _drawn(page) == {r["sample_index"]: _expected(r) for r in expected["results"]}


def test_800k_example_draws_decimated_and_zooms_to_full_resolution(page: Any, live_gateway: str) -> None:
    page.goto(f"{live_gateway}/ui")
    page.wait_for_selector("#example option[value='vsb-800k']", state="attached")
    page.select_option("#example", "vsb-800k")
    page.wait_for_selector(DONE, timeout=300_000)
    assert "error" not in page.get_attribute("#status", "class"), page.inner_text("#status")
    raw = httpx.get(f"{live_gateway}/v1/examples/vsb-800k", timeout=60).content
    api = _api(live_gateway, raw, sampling_rate_hz="40e6", include_rejected="true")
    (result,) = api["results"]
    assert result["n_samples"] == 800_000 and result["num_regions_detected"] > 0
    assert _drawn(page)[0] == _expected(result)
    assert page.evaluate("() => document.getElementById('plot-0').data[0].x.length") <= 3000

    region = result["regions"][len(result["regions"]) // 2]
    lo, hi = region["start"] - 300, region["end"] + 300
    page.evaluate(f"() => Plotly.relayout('plot-0', {{'xaxis.range': [{lo}, {hi}]}})")
    page.wait_for_function(f"() => document.getElementById('plot-0').dataset.visibleRange === '{lo}-{hi}'")
    xs = page.evaluate("() => document.getElementById('plot-0').data[0].x")
    assert xs == list(range(lo, hi + 1))  # every sample of the zoomed range, not a decimated view
    _shot(page, "ui-800k-zoom.png", "#signal-0")


def test_api_error_is_shown_as_the_apis_message(page: Any, live_gateway: str) -> None:
    page.goto(f"{live_gateway}/ui")
    page.wait_for_selector("#example option[value='seed-regime']", state="attached")
    page.select_option("#example", "seed-regime")
    page.wait_for_selector(DONE, timeout=240_000)
    page.evaluate(
        "() => { const s = document.getElementById('version'); s.append(new Option('99', '99'));"
        " s.value = '99'; }"
    )
    page.click("#run")
    page.wait_for_selector("#status.error")
    assert "version_not_found" in page.inner_text("#status")


def test_a_slow_api_is_shown_and_can_be_cancelled(page: Any, live_gateway: str) -> None:
    held: list[Any] = []

    def hold(route: Any) -> None:  # the request waits here: an API that does not answer
        held.append(route)

    page.route("**/v1/detect*", hold)
    page.goto(f"{live_gateway}/ui")
    page.wait_for_selector("#example option[value='seed-regime']", state="attached")
    page.select_option("#example", "seed-regime")
    page.wait_for_selector("#status.slow", timeout=60_000)
    assert "slow or busy" in page.inner_text("#status")
    page.focus("#cancel")
    page.keyboard.press("Enter")
    page.wait_for_selector("#status.error")
    assert "cancelled" in page.inner_text("#status")
    assert len(held) == 1  # the browser's own abort released it
    page.unroute("**/v1/detect*")


def test_test_page_has_one_plot_per_valid_sample(page: Any, live_gateway: str) -> None:
    for profile in ("seed", "model"):
        expected = httpx.get(f"{live_gateway}/test-text", params={"profile": profile}, timeout=300).json()
        page.goto(f"{live_gateway}/test?profile={profile}")
        page.wait_for_selector(DONE, timeout=240_000)
        assert "error" not in page.get_attribute("#status", "class"), page.inner_text("#status")
        drawn = _drawn(page)
        assert sorted(drawn) == [r["sample_index"] for r in expected["results"]]
        for r in expected["results"]:  # /test-text lists no rejected candidates; the page draws them too
            n, rejected, rectangles = drawn[r["sample_index"]]
            assert n == r["num_regions_detected"] and rectangles == n + rejected
        assert page.locator(".signal .plot .main-svg").count() >= len(drawn)
    _shot(page, "test-page.png", f"#signal-{expected['results'][0]['sample_index']}")


def test_docs_and_redoc_render_offline(page: Any, live_gateway: str) -> None:
    page.goto(f"{live_gateway}/docs")
    page.wait_for_selector(".opblock-summary-path[data-path='/v1/detect']")
    paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.dataset.path)")
    assert {"/v1/detect", "/v1/examples", "/test-text"} <= set(paths)
    _shot(page, "docs.png")
    page.goto(f"{live_gateway}/redoc")
    page.get_by_text("/v1/detect").first.wait_for()
    assert page.locator("h2").count() > 3
    _shot(page, "redoc.png")


def test_api_key_field_when_keys_are_configured(
    browser: Any, triton: EmbeddedTriton, redis_url: str, model_repo: Path
) -> None:
    key = "page-test-key-0123456789"
    settings = make_settings(
        triton.grpc_url, redis_url, model_repo, PORT=free_port(), API_KEYS=f"viewer:inference:{key}"
    )
    with serving(settings) as base, recording_page(browser, base) as pg:
        pg.goto(f"{base}/ui")
        pg.wait_for_selector("#key-label", state="visible")
        assert "API key" in pg.inner_text("#status")
        pg.wait_for_selector("#example option[value='seed-regime']", state="attached")
        pg.select_option("#example", "seed-regime")  # the example loads; /v1/detect refuses without a key
        pg.wait_for_selector("#status.error")
        assert "401 unauthorized" in pg.inner_text("#status")
        pg.fill("#apikey", key)
        pg.keyboard.press("Tab")  # change: the models are listed with the key
        pg.wait_for_selector("#model option[value='pd_unet1d']", state="attached")
        pg.click("#run")
        pg.wait_for_selector("#status.done", timeout=240_000)
        assert pg.locator(".signal .plot").count() == 7
        # Kept in the page's memory only: nothing in storage or cookies.
        assert pg.evaluate("() => [localStorage.length, sessionStorage.length, document.cookie]") == [
            0,
            0,
            "",
        ]
