"""The HTML report: self-contained, escaped, and rendered by a real browser (headless
Chromium; skipped with a visible reason when it is not installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from pellucid.cli.main import main
from pellucid.report.html import build_report

EVIL = '<script>alert("pwned")</script>'
SECTIONS = (
    "summary", "curves", "filters", "explanations", "localisation", "adversarial", "sanity",
    "configs",
)  # fmt: skip


def _train(out: Path, method: str) -> Path:
    from conftest import train_tiny_run

    return train_tiny_run(out, method, epochs=2)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    std = _train(root / "std<b>run", "standard")  # a run name with markup in it
    csg = _train(root / "csg", "csg")
    code = main(
        [
            "compare-explainers",
            str(std),
            "--explainers",
            "neuromask",
            "gradcam",
            "centre",
            "--option",
            "neuromask.iterations=5",
            "--n",
            "4",
            "--quiet",
        ]
    )
    assert code == 0
    _save_detection(csg)
    assert main(["localise", str(std), str(csg), "--n", "8", "--save", "--quiet"]) == 0
    per_filter = ["--protocol", "filters", "--assign", "gates", "--reference", "40"]
    assert main(["localise", str(csg), *per_filter, "--n", "8", "--save", "--quiet"]) == 0
    sanity = ["sanity-check", str(csg), "--explainers", "gradcam", "random", "--n", "4"]
    assert main([*sanity, "--quiet"]) == 0  # written to csg/sanity, where the report looks
    cfg = yaml.safe_load((std / "config.yaml").read_text())
    cfg["info"]["class_names"][0] = EVIL  # user-supplied text that must come out escaped
    (std / "config.yaml").write_text(yaml.safe_dump(cfg))
    return build_report([std, csg], root / "report.html", title=f"demo {EVIL}")


def _save_detection(run: Path) -> None:
    """What ``pellucid detect-adversarial RUN --save`` writes (built from the result classes,
    not attacked: the tiny run classifies too few images for that), one name with markup."""
    from pellucid.apps.adversarial import AttackReport, DetectionResult
    from pellucid.io import write_json

    auc = {"gate-groups": {"logistic": 0.91, "forest": 0.97, "prototype": None}}
    auc["logits"] = {"logistic": 0.95, "forest": 0.9, "prototype": 0.8, "lid": None}
    auc["logits"] |= {"prototype-two-sided": 0.61, "lid-two-sided": None, "zz-new": 0.5}
    auc["logits"] |= {"mahalanobis-two-sided": 0.62}  # after prototype's: sorted when saved
    adaptive = {"logits": {"logistic": 0.7, "logistic-attacked": 0.31}}
    forest = {"logits": {"forest": 0.8, "forest-attacked": 0.42}}
    reports = [AttackReport(EVIL, {"eps": 0.2}, 40, 0.5, 20, 0.2, 3.1, auc),
               AttackReport("adaptive-logistic", {}, 20, 0.9, 18, 0.2, 3.0, adaptive),
               AttackReport("adaptive-forest", {}, 20, 0.9, 18, 0.2, 3.0, forest)]  # fmt: skip
    result = DetectionResult(50, 0.8, {"gate-groups": 3, "logits": 3}, ["layer4"], 5, 90, reports)
    write_json(run / "adversarial.json", result.to_dict())


def test_report_shows_saved_adversarial_detection(report: Path) -> None:
    html = report.read_text()
    section = html[html.index('<section id="adversarial">') : html.index('<section id="sanity">')]
    assert "csg: 50 test images, clean accuracy 0.8000" in section
    assert section.count("<tr>") == 5  # header + one row per attack and feature kind
    assert '<td class="best">0.9700</td>' in section  # forest column's best
    assert '<td class="best">0.9500</td>' in section  # logistic column's best
    assert "<td>–</td>" in section  # no prototype score for gate-groups
    assert "&lt;script&gt;" in section
    head = section[section.index("<thead>") : section.index("</thead>")]
    # the columns the saved results score, in detector order, then the extras as saved;
    # none for a detector no row scores (LID, LID two-sided, Mahalanobis)
    columns = ["logistic", "forest", "prototype", "prototype-two-sided", "mahalanobis-two-sided",
               "logistic-attacked", "forest-attacked", "zz-new"]  # fmt: skip
    assert [c.split("<th>")[-1] for c in head.split(" ↑</th>")[:-1]] == columns
    adaptive = section[section.index("<td>adaptive-logistic</td>") :].split("</tr>")[0]
    assert adaptive.count("<td>–</td>") == 6 and "0.3100" in adaptive
    adaptive = section[section.index("<td>adaptive-forest</td>") :].split("</tr>")[0]
    assert adaptive.count("<td>–</td>") == 6 and "0.4200" in adaptive


def test_report_shows_the_sanity_check(report: Path) -> None:
    html = report.read_text()
    section = html[html.index('<section id="sanity">') : html.index('<section id="configs">')]
    assert "<h3>csg: 4 test images of shapes, target = label, seed 0</h3>" in section
    # Spearman, SSIM and HOG tables: header + gradcam + random each
    assert section.count("<tr>") == 9
    assert "<h4>SSIM</h4>" in section and "<h4>HOG correlation</h4>" in section
    assert "cascade +fc ↓" in section and "cascade +layer1 ↓" in section
    assert "random labels" not in section  # no random-label run was given
    assert section.count("<img ") == 2  # the cascade curves and the maps
    for table in section.split("<h4>")[1:]:
        random_row = table[table.index("<td>random</td>") :].split("</tr>")[0]
        assert random_row.count("1.0000") == 6  # the control ignores the model: full + 5 steps


def test_report_shows_saved_localisation_of_every_run(report: Path) -> None:
    import json

    html = report.read_text()
    section = html[html.index('<section id="localisation">') : html.index('<section id="adv')]
    assert section.count("<tr>") == 4  # header + the two runs' CAM + the CSG run's filters
    assert 'class="best"' in section  # same explainer, q and threshold: comparable rows
    assert "per-filter maps at layer4, filters by gates" in section
    assert "std&lt;b&gt;run" in section and "<td>csg</td>" in section
    assert "gradcam at layer4, top 0.3000, IoU &gt; 0.3000, target label, 8 images" in section
    saved = json.loads((report.parent / "csg" / "localisation.json").read_text())
    assert f"<td>{saved['pointing_game']:.4f}</td>" in section or (
        f'<td class="best">{saved["pointing_game"]:.4f}</td>' in section
    )


def test_report_is_self_contained_and_escaped(report: Path) -> None:
    html = report.read_text()
    assert EVIL not in html and "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in html
    assert "std&lt;b&gt;run" in html and "std<b>run" not in html
    for attr, value in re.findall(r'\b(src|href)="([^"]*)"', html):
        assert value.startswith(("data:image/png;base64,", "#")), (attr, value[:60])
    assert "@import" not in html and "url(" not in html
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    assert html.count('class="best"') >= 2  # best values are marked
    assert "↑" in html and "↓" in html  # metric directions are shown


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


# Chromium's own service traffic (updates, clock, sign-in), not requests made by the page.
BROWSER_HOSTS = (
    "clients2.google.com",
    "update.googleapis.com",
    "accounts.google.com",
    "clientservices.googleapis.com",
    "safebrowsing.googleapis.com",
    "optimizationguide-pa.googleapis.com",
    "content-autofill.googleapis.com",
    "redirector.gvt1.com",
    "edgedl.me.gvt1.com",
    "android.clients.google.com",
)


def _page_requests(requests: list[str]) -> list[str]:
    def host(r: str) -> str:
        target = r.split(" ", 1)[1]
        return re.sub(r"^https?://", "", target).split("/")[0].split(":")[0]

    return [r for r in requests if host(r) not in BROWSER_HOSTS]


class _Recorder(BaseHTTPRequestHandler):
    requests: list[str] = []

    def _record(self) -> None:
        type(self).requests.append(f"{self.command} {self.path}")
        self.send_response(404)
        self.end_headers()

    do_GET = do_POST = do_HEAD = do_CONNECT = _record

    def log_message(self, *args) -> None:  # silence
        pass


@pytest.mark.skipif(_chromium() is None, reason="Chromium not installed (.ci/run installs it)")
def test_report_renders_in_a_real_browser_without_requests(report: Path, tmp_path: Path):
    from PIL import Image, ImageStat

    # Every request the page makes goes through this proxy and is recorded.
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.requests = []
    # The test's own instrumentation (not part of the report): after load, count the images
    # the browser decoded. The report's CSP forbids scripts, so this copy drops it.
    html = report.read_text()
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html, flags=re.S)
    probe = (
        "<script>window.addEventListener('load', () => { const im = [...document.images];"
        "const d = document.createElement('div'); d.id = 'probe';"
        "d.dataset.total = im.length;"
        "d.dataset.ok = im.filter(i => i.complete && i.naturalWidth > 0).length;"
        "document.body.appendChild(d); });</script>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", probe + "</body>"))
    flags = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--proxy-server=http://127.0.0.1:{server.server_address[1]}",
        "--proxy-bypass-list=<-loopback>",
        "--virtual-time-budget=5000",
    ]
    control = tmp_path / "control.html"
    control.write_text('<img src="http://pellucid-control.invalid/x.png"><p>control</p>')
    try:
        # positive control: a page that does fetch something is caught by the proxy
        subprocess.run([*flags, "--dump-dom", control.as_uri()], capture_output=True, timeout=120)
        assert any("pellucid-control.invalid" in r for r in _Recorder.requests), (
            "the request recorder did not see the control page's request"
        )
        _Recorder.requests = []
        dom = subprocess.run(
            [*flags, "--dump-dom", probed.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        shot = tmp_path / "shot.png"
        subprocess.run(
            [*flags, f"--screenshot={shot}", "--window-size=1200,1600", report.as_uri()],
            capture_output=True,
            timeout=120,
            check=True,
        )
    finally:
        server.shutdown()
    for section in SECTIONS:
        assert f'id="{section}"' in dom, f"section {section} missing from the rendered DOM"
    m = re.search(r'id="probe" data-total="(\d+)" data-ok="(\d+)"', dom)
    assert m, "the load probe did not run"
    total, ok = int(m.group(1)), int(m.group(2))
    assert total >= 4 and ok == total, f"{ok} of {total} images rendered"
    assert _page_requests(_Recorder.requests) == [], f"the page made requests: {_Recorder.requests}"
    image = Image.open(shot).convert("L")
    stat = ImageStat.Stat(image)
    assert stat.stddev[0] > 10, "the screenshot is blank"
    assert image.getextrema()[0] < 100, "no dark text or figures in the screenshot"


def test_summary_knows_every_declared_metric_direction() -> None:
    import subprocess
    import sys

    # a fresh interpreter that imports only the report module must still know flops_ratio
    code = (
        "from pellucid.report.html import summary_table, RunRecord\n"
        "from pathlib import Path\n"
        "r = RunRecord('r', Path('.'), {}, '', {'flops_ratio': 0.5, 'latency_ratio': 0.7})\n"
        "print([c['key'] for c in summary_table([r])['columns']])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "flops_ratio" in out.stdout and "latency_ratio" in out.stdout


def test_read_run_names_a_config_or_metrics_file_of_the_wrong_kind(tmp_path: Path) -> None:
    from pellucid.errors import DataError
    from pellucid.report.html_runs import read_run

    (tmp_path / "metrics.json").write_text('{"accuracy": 0.5}')
    (tmp_path / "config.yaml").write_text("method:\ninfo:\n")  # sections left empty by hand
    record = read_run(tmp_path)
    assert (record.method, record.class_names) == ("?", [])
    for text, message in (
        ("- a\n- b\n", "holds a list, not a mapping"),
        ("a: [", "not valid YAML"),
    ):
        (tmp_path / "config.yaml").write_text(text)
        with pytest.raises(DataError, match=message):
            read_run(tmp_path)
    (tmp_path / "config.yaml").write_text("method: {name: csg}\n")
    (tmp_path / "metrics.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="metrics.json holds a list, not an object"):
        read_run(tmp_path)
