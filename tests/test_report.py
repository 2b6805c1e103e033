"""`dcrepro report`: the static pages, opened from file:// in headless Chromium as a user would see them.

The browser is driven over the DevTools protocol (``websocket-client``, the ``test`` extra): the tests read
the text and computed colour of cells, check that figures load and that the page logs no error.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from dcrepro.aggregate import table_cells
from dcrepro.cli import main
from dcrepro.report import VERDICT_COLOURS, write_report
from dcrepro.runner import build_plan, execute, plan_figure
from dcrepro.store import Store

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium)")


class Browser:
    """Headless Chromium on a private profile; one tab driven over the DevTools protocol."""

    def __init__(self, profile: Path, websocket):
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        targets = json.load(no_proxy.open(f"http://127.0.0.1:{port}/json/list", timeout=10))
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self._id, self.errors = 0, []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                assert "error" not in msg, msg
                return msg.get("result", {})
            self._event(msg)

    def _event(self, msg: dict) -> None:
        p = msg.get("params", {})
        if msg.get("method") == "Runtime.exceptionThrown":
            self.errors.append(p["exceptionDetails"].get("text", "exception"))
        elif msg.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
        elif msg.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
            self.errors.append(p["entry"]["text"] + " " + p["entry"].get("url", ""))
        elif msg.get("method") == "Page.loadEventFired":
            self._loaded = True

    def open(self, path: Path) -> None:
        """Load a page and wait for its load event (images included)."""
        self.errors, self._loaded = [], False
        self.call("Page.navigate", url=path.resolve().as_uri())
        deadline = time.time() + 30
        while not self._loaded and time.time() < deadline:
            self._event(json.loads(self.ws.recv()))
        assert self._loaded, f"{path} did not finish loading"

    def js(self, expression: str):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in res, res
        return res["result"].get("value")

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def browser(tmp_path):
    websocket = pytest.importorskip("websocket", reason="websocket-client not installed (pip install -e '.[test]')")
    b = Browser(tmp_path / "chromium-profile", websocket)
    yield b
    b.close()


def _rgb(hex_colour: str) -> str:
    h = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(h[i:i + 2], 16) for i in (0, 2, 4)))


def _cell(b: Browser, key: str) -> dict:
    return b.js(f"(() => {{ const td = document.querySelector('td[data-cell={json.dumps(key)}]');"
                "return td && {text: td.innerText, bg: getComputedStyle(td).backgroundColor}; })()")


TRICKY_ROW = "Bad <i>&amp;</i>"


@pytest.fixture
def toy_report(toy_project, tmp_path):
    """Full-budget toy runs (within and above cells), an accepted baseline, the figure, and the report."""
    spec = toy_project / "benchmarks" / "toy.toml"
    spec.write_text(spec.read_text().replace('"Bad" = "toy:bad"', f'"Bad" = "toy:bad"\n"{TRICKY_ROW}" = "toy:bad"'))
    execute(build_plan("toy", budget="full") + plan_figure("toy", "fig1", "full"), device="cpu", progress=False)
    from dcrepro.plots import write_figure

    with Store() as s:
        write_figure("toy", "fig1", s, "full")
        s.accept(s.keys())
        cells = table_cells("toy", "table1", "full", s).set_index(["row", "dataset", "metric"])
        write_report(tmp_path / "report", ["toy"], "full", s)
    return tmp_path / "report", cells


def test_report_cli_writes_linked_pages(toy_project, tmp_path, capsys):
    execute(build_plan("toy", budget="quick"), device="cpu", progress=False)
    out = tmp_path / "site"
    assert main(["report", "--paper", "toy", "--budget", "quick", "--out", str(out)]) == 0
    index, page = (out / "index.html").read_text(), (out / "toy.html").read_text()
    assert 'href="toy.html"' in index and 'href="index.html"' in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    assert "not comparable" in page and "quick" in page
    assert main(["report", "--paper", "nope", "--out", str(out)]) == 2
    assert "valid papers" in capsys.readouterr().err


TOY_READING = """
[[readings]]
id = "pause"
question = "does the toy pause between steps?"
jobs = ["toy"]
default = "none"
reason = "the toy's own value"
[readings.options]
none = { sleep = 0.0 }
short = { sleep = 0.001 }
"""


def test_report_folds_other_readings_under_the_default(toy_project, tmp_path):
    spec = toy_project / "benchmarks" / "toy.toml"
    spec.write_text(spec.read_text() + TOY_READING)
    execute(build_plan("toy", budget="full", readings=["all"]), device="cpu", progress=False)
    with Store() as s:
        write_report(tmp_path / "site", ["toy"], "full", s)
    page = (tmp_path / "site" / "toy.html").read_text()
    assert "does the toy pause between steps?" in page  # the declared reading, explained once
    assert page.count('<details class="reading">') == 1 and "Reading <b>pause=short</b>" in page
    assert page.index("Reading <b>default</b>") < page.index("Reading <b>pause=short</b>")


@needs_chromium
def test_toy_report_as_seen_in_chromium(toy_report, browser):
    site, cells = toy_report
    browser.open(site / "index.html")
    assert browser.errors == []
    assert "TOY" in browser.js("document.body.innerText")
    assert browser.js("document.querySelector('a[href=\"toy.html\"]') !== null")

    browser.open(site / "toy.html")
    assert browser.errors == []
    good = cells.loc[("Good", "blobs", "acc")]
    assert good["verdict"] == "within"
    seen = _cell(browser, "Good|blobs|acc")
    assert f"{good['ours']:.2f} ± {good['ours_std']:.2f}" in seen["text"] and "paper 95.00" in seen["text"]
    assert seen["bg"] == _rgb(VERDICT_COLOURS["within"])
    bad = _cell(browser, "Bad|blobs|acc")
    assert cells.loc[("Bad", "blobs", "acc"), "verdict"] == "above" and bad["bg"] == _rgb(VERDICT_COLOURS["above"])
    assert "data not available" in _cell(browser, "Good|absent|acc")["text"]
    assert browser.js("getComputedStyle(document.querySelector('td[data-cell^=\"Cited|blobs\"]')).backgroundColor") \
        == "rgba(0, 0, 0, 0)"  # a cited baseline: not re-run, not coloured
    # markup in a row label is shown as text, never interpreted
    assert TRICKY_ROW in browser.js("document.body.innerText")
    assert browser.js("document.querySelectorAll('td.row i').length") == 0
    # the figure is there and decoded
    assert browser.js("[...document.images].map(i => i.complete && i.naturalWidth > 0)") == [True]
    # a click on a cell opens its provenance: config hash, seeds, device
    browser.js("document.querySelector('td[data-cell=\"Good|blobs|acc\"] a').click()")
    prov = browser.js("(() => { const d = document.getElementById(location.hash.slice(1));"
                      "return {open: d.open, text: d.innerText}; })()")
    assert prov["open"] and good["config_hash"] in prov["text"] and "seeds 0-2" in prov["text"]
    # the regression view: today's runs against the accepted ones (the same runs: all within)
    assert "against the accepted baseline (within band" in browser.js("document.body.innerText")
    assert browser.errors == []


@needs_chromium
@pytest.mark.skipif(not (REPO / "results" / "store.sqlite").exists(), reason="no committed store")
def test_committed_store_page_in_chromium(tmp_path, browser):
    """A real paper page from the committed store: DEC-CRL (2 tables, 1 figure)."""
    with Store(REPO / "results" / "store.sqlite") as s:
        cells = table_cells("deccrl", "table2", "reduced", s)
        write_report(tmp_path / "site", ["deccrl"], "reduced", s)
    browser.open(tmp_path / "site" / "deccrl.html")
    assert browser.errors == []
    line = cells[cells["n"] > 1].iloc[0]
    seen = _cell(browser, f"{line['row']}|{line['dataset']}|{line['metric']}")
    assert f"{line['ours']:.2f} ± {line['ours_std']:.2f}" in seen["text"]
    colour = VERDICT_COLOURS.get(line["verdict"])
    assert seen["bg"] == (_rgb(colour) if colour else "rgba(0, 0, 0, 0)")
    widths = browser.js("[...document.images].map(i => i.naturalWidth)")
    assert widths and all(w > 0 for w in widths)
