"""The run report over a real run (ingest --keep-removed, dedup, tokenize on two bundled WARCs, plus a
trainer metrics.jsonl): its numbers equal the stats files and Parquet, every chart is an SVG with data,
and headless Chromium loads it with no console message and paints every chart. A fine-tune's metrics
are drawn beside pretraining's."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest

from tokenmill.jobs.cli import main
from tokenmill.pipeline.ingest.filters import signal_columns
from tokenmill.pipeline.recipe import load_recipe
from tokenmill.pipeline.report import funnel, render, thresholds, write_report
from tokenmill.pipeline.report.read import LENGTH_COLUMN, holds_output
from tokenmill.pipeline.report.svg import KEPT, REMOVED, VAL
from tokenmill.pipeline.storage import S3Options

WARCS = Path(__file__).parent / "data" / "warc"
S3 = S3Options()
METRICS = [
    {"step": step, "loss": 10.0 - step * 0.05, "lr": 6e-4, "tokens_per_s": 1000.0 + step, "mfu": None}
    for step in range(0, 101, 5)
]
for record in METRICS:
    if record["step"] % 25 == 0:
        record["val_loss"] = 10.2 - record["step"] * 0.04
# A fine-tune as `tokenmill sft` logs it: step 0 holds the base model's held-out loss and no train loss;
# step 7's loss is null too, and the end of an epoch adds a key the report does not know.
BASE_HELD_OUT = 3.5
SFT_METRICS = [
    {
        "step": 0,
        "loss": None,
        "val_loss": BASE_HELD_OUT,
        "lr": 0.0,
        "tokens_per_s": None,
        "mfu": None,
        "kind": "sft",
    }
]
for step in range(1, 21):
    record = {
        "step": step,
        "loss": None if step == 7 else 3.0 - step * 0.02,
        "lr": 1e-4,
        "tokens_per_s": 500.0,
    }
    record |= {"mfu": None, "kind": "sft"}
    record |= {"val_loss": 3.4 - step * 0.03} if step % 5 == 0 else {}
    record |= {"epoch_end": 1} if step == 10 else {}
    SFT_METRICS.append(record)
SFT_DATA = {"rows": 60, "train": 48, "heldout": 6, "skipped": {"unknown_role": 4, "over_context": 2}}


@pytest.fixture(scope="module")
def root(spark, tmp_path_factory) -> Path:
    """One real run for the whole module: the jobs as `tokenmill` runs them, in the shared session."""
    out = tmp_path_factory.mktemp("report") / "root"
    warcs = [str(WARCS / "dolma-sample-0000.warc.gz"), str(WARCS / "resiliparse-warcfile.warc.gz")]
    assert main(["ingest", *warcs, "-o", str(out), "--keep-removed", "--master", "local[2]"]) == 0
    assert main(["dedup", "-o", str(out), "--master", "local[2]"]) == 0
    assert main(["tokenize", "-o", str(out), "--encoding", "gpt2", "--master", "local[2]"]) == 0
    metrics = out / "train" / "tiny" / "metrics.jsonl"
    metrics.parent.mkdir(parents=True)
    metrics.write_text("".join(json.dumps(record) + "\n" for record in METRICS))
    return out


@pytest.fixture(scope="module")
def page(root) -> str:
    assert main(["report", "-o", str(root)]) == 0
    return (root / "report.html").read_text()


def _stats(root: Path, name: str) -> dict[str, Any]:
    return json.loads((root / "stats" / f"{name}.json").read_text())


def _manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "tokens" / "gpt2" / "manifest.json").read_text())


def _section(page: str, anchor: str) -> str:
    return re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S).group(1)


def _tips(fragment: str) -> list[str]:
    """The hover titles of the bars: every bar says what it counts."""
    return re.findall(r"<rect [^>]*><title>([^<]*)</title></rect>", fragment)


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def _curves(fragment: str) -> list[tuple[str, list[tuple[float, float]]]]:
    """The loss charts' lines: (name, [(x, y)] as drawn)."""
    lines = re.findall(r'<polyline points="([^"]+)"[^>]*><title>([^<]+)</title>', fragment)
    return [
        (name, [tuple(map(float, point.split(","))) for point in points.split()]) for points, name in lines
    ]


def _write_training(
    root: Path, folder: str, records: list[dict[str, Any]], sft_data: dict[str, Any] | None = None
) -> None:
    """A trainer's output folder under ROOT: metrics.jsonl, and sft_data.json for a fine-tune."""
    metrics = root / folder / "metrics.jsonl"
    metrics.parent.mkdir(parents=True)
    metrics.write_text("".join(json.dumps(record) + "\n" for record in records))
    if sft_data is not None:
        (metrics.parent / "sft_data.json").write_text(json.dumps(sft_data))


def test_funnel_rows_equal_the_stats_files(root, page):
    ingest, dedup, counts = _stats(root, "ingest"), _stats(root, "dedup"), _manifest(root)["counts"]
    rows = re.findall(
        r'<tr><td>([^<]+)</td><td class="num">([\d,]+)</td><td class="num">([\d,]+)</td>'
        r'<td class="num">([\d,]+)</td>',
        _section(page, "funnel"),
    )
    table = {stage: tuple(map(_number, numbers)) for stage, *numbers in rows}
    dropped = Counter()
    for key, count in ingest["dropped"].items():
        stage, _, reason = key.partition(":")
        dropped["language precheck" if reason.startswith("precheck_") else stage] += count
    for stage, count in dropped.items():
        assert table[stage][1] == count, stage
    ingest_rows = [numbers for stage, numbers in table.items() if stage not in ("dedup", "tokenize")]
    assert ingest_rows[0][0] == ingest["records"]
    assert ingest_rows[-1][2] == ingest["kept"]
    assert table["dedup"] == (dedup["docs_in"], dedup["docs_in"] - dedup["survivors"], dedup["survivors"])
    assert table["tokenize"] == (counts["documents_in"], 0, counts["documents"])
    assert [step.records_out for step in funnel(ingest, dedup, None)][-1] == dedup["survivors"]


def test_funnel_folds_errors_into_their_stage():
    ingest = {"records": 10, "dropped": {"read:request_record": 4, "c4:too_few_sentences": 1}, "errors": {}}
    ingest["errors"] = {"read:corrupt_gzip": 2, "process:ValueError": 1}
    steps = funnel(ingest, None, None)
    assert [(s.stage, s.records_in, s.records_out) for s in steps] == [
        ("read", 10, 4),
        ("process", 4, 3),
        ("c4", 3, 2),
    ]
    assert steps[0].reasons == {"request_record": 4, "error: corrupt_gzip": 2}


def test_language_bars_count_every_document(root, page):
    kept = Counter(pq.read_table(root / "documents", columns=["language"]).column("language").to_pylist())
    removed = Counter(pq.read_table(root / "removed", columns=["language"]).column("language").to_pylist())
    tips = _tips(_section(page, "languages"))
    assert sorted(tips) == sorted(
        [f"{lang}: {n:,} kept" for lang, n in kept.items()]
        + [f"{lang}: {n:,} removed" for lang, n in removed.items()]
    )


def _histogram_sums(fragment: str) -> Counter[str]:
    sums: Counter[str] = Counter()
    for tip in _tips(fragment):
        count, group = tip.rsplit(": ", 1)[1].split(" ")
        sums[group] += _number(count)
    return sums


def test_every_signal_has_a_histogram_of_every_document(root, page):
    signals = _section(page, "signals")
    charts = dict(re.findall(r'aria-label="histogram of ([a-z0-9_]+)"[^>]*>(.*?)</svg>', page, re.S))
    kept = pq.read_table(root / "documents")
    removed = pq.read_table(root / "removed")
    for column in ["language_score", *signal_columns()]:
        expected = {"kept": kept.num_rows - kept.column(column).null_count}
        expected["removed"] = removed.num_rows - removed.column(column).null_count
        assert _histogram_sums(charts[column]) == Counter(expected), column
        assert (f"histogram of {column}" in signals) == (column != LENGTH_COLUMN)
    assert f"histogram of {LENGTH_COLUMN}" in _section(page, "length")


def test_recipe_thresholds_are_drawn(page):
    lines = dict(re.findall(r"<line [^>]*><title>([a-z_0-9.\[\]]+) = ([^<]+)</title></line>", page))
    assert lines["language.threshold"] == "0.65"
    assert lines["gopher_quality.min_doc_words"] == "50"
    assert lines["gopher_quality.max_doc_words"] == "100000"
    assert lines["gopher_repetition.top_ngram_fracs[2]"] == "0.16"
    assert lines["fineweb_quality.line_punct_thr"] == "0.12"
    assert "c4.min_num_sentences" in lines


def test_thresholds_follow_the_recipe():
    recipe = load_recipe("fineweb", ["gopher_quality.min_doc_words=0", "c4.enabled=false"]).tables
    found = thresholds(recipe)
    assert found[LENGTH_COLUMN] == [("gopher_quality.max_doc_words", 100000.0)]
    assert "c4_sentences" not in found
    assert found["gopher_rep_dup_10_gram_char_frac"] == [("gopher_repetition.dup_ngram_fracs[5]", 0.10)]
    assert found["gopher_q_hash_word_ratio"] == found["gopher_q_ellipsis_word_ratio"]


def test_dedup_tokens_and_loss_charts(root, page):
    dedup, manifest = _stats(root, "dedup"), _manifest(root)
    clusters = sum(dedup["clusters_by_size"].values())
    assert (
        sum(_number(tip.rsplit(": ", 1)[1].split()[0]) for tip in _tips(_section(page, "dedup"))) == clusters
    )
    shards = [f"{shard['bin']}: {shard['tokens']:,}" for shard in manifest["shards"]]
    assert _tips(_section(page, "tokens")) == shards
    training = _section(page, "training")
    assert [(name, len(points)) for name, points in _curves(training)] == [
        ("train loss", 21),
        ("val loss", 5),
    ]
    assert "train/tiny/metrics.jsonl" in training


def _columns(training: str) -> tuple[str, str]:
    """The training section's two columns: pretraining, supervised fine-tuning."""
    pair = re.fullmatch(
        r'<h2>Training</h2><div class="pair"><div>(.*?)</div><div>(.*)</div></div>', training, re.S
    )
    return pair.group(1), pair.group(2)


def _captions(fragment: str) -> list[str]:
    return re.findall(r"<figcaption>([^<]*)</figcaption>", fragment)


def _rows(fragment: str) -> dict[str, str]:
    return dict(re.findall(r'<tr><td>([^<]*)</td><td class="num">([^<]*)</td></tr>', fragment))


def test_fine_tune_is_drawn_beside_pretraining(tmp_path):
    _write_training(tmp_path, "train/tiny", METRICS)
    _write_training(tmp_path, "sft", SFT_METRICS, SFT_DATA)
    training = _section(render(str(tmp_path), S3), "training")
    pretraining, fine_tuning = _columns(training)
    assert _captions(pretraining) == ["pretraining: Loss by step — train/tiny/metrics.jsonl"]
    assert _captions(fine_tuning) == ["supervised fine-tuning: Loss by step — sft/metrics.jsonl"]
    assert [(name, len(points)) for name, points in _curves(pretraining)] == [
        ("train loss", 21),
        ("val loss", 5),
    ]
    # 20 steps with a loss but step 7's is null; held-out: the base model at step 0, then every 5th step
    assert [(name, len(points)) for name, points in _curves(fine_tuning)] == [
        ("train loss", 19),
        ("held-out loss", 5),
    ]
    assert re.findall(r'<svg [^>]*width="(\d+)"', training) == ["600", "600"]
    assert "None" not in training and "nan" not in training
    summary = _rows(fine_tuning)
    assert summary["last step"] == "20" and summary["last loss"] == "2.6"
    assert summary["base model held-out loss"] == "3.5" and summary["best held-out loss"] == "2.8"
    assert "base model held-out loss" not in pretraining


def test_base_model_held_out_loss_is_marked_at_step_zero(tmp_path):
    _write_training(tmp_path, "sft", SFT_METRICS)
    fine_tuning = _columns(_section(render(str(tmp_path), S3), "training"))[1]
    mark = re.findall(
        r'<line x1="([\d.]+)" [^>]*y1="([\d.]+)"[^>]*><title>base model held-out loss = 3.5</title>',
        fine_tuning,
    )
    curves = dict(_curves(fine_tuning))
    first_held_out = curves["held-out loss"][0]  # step 0, the base model
    assert [(float(x), float(y)) for x, y in mark] == [first_held_out]
    assert curves["train loss"][0][0] > first_held_out[0]  # no train loss drawn at step 0


def test_sft_data_counts_are_shown(tmp_path):
    _write_training(tmp_path, "sft", SFT_METRICS, SFT_DATA)
    fine_tuning = _columns(_section(render(str(tmp_path), S3), "training"))[1]
    table = re.search(r"<table><thead><tr><th>conversations</th>.*?</table>", fine_tuning).group(0)
    assert _rows(table) == {
        "rows": "60",
        "train": "48",
        "heldout": "6",
        "skipped: unknown_role": "4",
        "skipped: over_context": "2",
    }


def test_a_fine_tune_alone_names_pretraining_absent(tmp_path):
    _write_training(tmp_path, "sft", SFT_METRICS)
    assert holds_output(str(tmp_path), S3)
    pretraining, fine_tuning = _columns(_section(render(str(tmp_path), S3), "training"))
    assert pretraining.startswith('<p class="absent">Absent: <code>train/**/metrics.jsonl</code>')
    assert len(_curves(fine_tuning)) == 2


def _without_timestamp(page: str) -> str:
    return re.sub(r"generated [^<]*", "", page)


def test_without_a_fine_tune_the_training_section_is_unchanged(tmp_path):
    """Pretraining alone draws one full-width chart as before fine-tuning existed, whether its records
    say kind "pretrain" or, written before kinds, nothing; a fine-tune changes that section alone."""
    old, new = tmp_path / "old", tmp_path / "new"
    _write_training(old, "train/tiny", METRICS)
    _write_training(new, "train/tiny", [{**record, "kind": "pretrain"} for record in METRICS])
    training = _section(render(str(old), S3), "training")
    assert training == _section(render(str(new), S3), "training")
    assert "pair" not in training and "pretraining" not in training
    assert _captions(training) == ["Loss by step — train/tiny/metrics.jsonl"]
    assert re.findall(r'<svg [^>]*width="(\d+)"', training) == ["900"]
    assert [(name, len(points)) for name, points in _curves(training)] == [
        ("train loss", 21),
        ("val loss", 5),
    ]
    before = _without_timestamp(render(str(old), S3))
    _write_training(old, "sft", SFT_METRICS, SFT_DATA)
    after = _without_timestamp(render(str(old), S3))
    assert after.replace(_section(after, "training"), "") == before.replace(training, "")
    assert _section(after, "training") != training


def test_page_is_self_contained(page):
    assert "<script" not in page and "@import" not in page and "url(" not in page
    assert re.findall(r'(?:src|href)="([^"]*)"', page) == ["data:,"]
    assert set(re.findall(r"https?://[^\s\"'<]+", page)) == {"http://www.w3.org/2000/svg"}


def test_absent_inputs_are_named(tmp_path, root):
    (tmp_path / "stats").mkdir()
    shutil.copy(root / "stats" / "ingest.json", tmp_path / "stats" / "ingest.json")
    page = render(str(tmp_path), S3)
    for absent in ("documents/*.parquet", "stats/dedup.json", "tokens/*/manifest.json", "metrics.jsonl"):
        assert f"Absent: <code>{absent}</code>" in page
    assert "gopher_quality.min_doc_words" not in page  # no histograms without documents
    assert "<svg" in _section(page, "funnel")


def test_report_of_a_root_on_s3(root, s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="tokenmill-report")
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith(".") and path.name != "report.html":
            client.put_object(
                Bucket="tokenmill-report", Key=f"run/{path.relative_to(root)}", Body=path.read_bytes()
            )
    s3 = S3Options(endpoint_url=s3_endpoint)
    uri = write_report("s3://tokenmill-report/run", s3)
    assert uri == "s3://tokenmill-report/run/report.html"
    remote = client.get_object(Bucket="tokenmill-report", Key="run/report.html")["Body"].read().decode()
    local = render(str(root), S3)

    def body(page: str, location: str) -> str:
        return page.split("</p>", 1)[1].replace(location, "ROOT")

    assert body(remote, "s3://tokenmill-report/run") == body(local, str(root))


# ---------------------------------------------------------------- headless Chromium


class Chromium:
    """Chromium driven over --remote-debugging-pipe (DevTools protocol on fds 3 and 4): console and log
    messages are collected as events, so nothing depends on the format of Chromium's own logging."""

    def __init__(self, binary: str, profile: Path):
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def wire_fds() -> None:  # in the child: its fd 3 reads commands, fd 4 writes replies
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
        flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
        self.process = subprocess.Popen(
            [binary, *flags, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=wire_fds,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self.events = b"", 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def _message(self, timeout: float = 60) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._read], [], [], timeout)
            chunk = os.read(self._read, 1 << 20) if ready else b""
            if not chunk:
                raise RuntimeError("chromium stopped answering")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        command = {"id": self._next_id, "method": method, "params": params}
        if session:
            command["sessionId"] = self.session
        os.write(self._write, json.dumps(command).encode() + b"\0")
        while True:
            message = self._message()
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def load(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        while not any(event.get("method") == "Page.loadEventFired" for event in self.events):
            self.events.append(self._message())

    def console_messages(self) -> list[str]:
        """Console API calls, uncaught exceptions and browser log entries (failed loads, CSP, …)."""
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.consoleAPICalled":
                found.append(f"console.{params['type']}: {params['args']}")
            elif event.get("method") == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif event.get("method") == "Log.entryAdded":
                found.append(f"log {params['entry']['level']}: {params['entry']['text']}")
        return found

    def evaluate(self, expression: str, wait: bool = False) -> Any:
        reply = self.call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=wait
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"evaluate: {reply['exceptionDetails']}")
        return reply["result"]["value"]

    def screenshot(self, width: int) -> bytes:
        """The whole page at 1 device pixel per CSS pixel, so element boxes index the image directly."""
        height = self.evaluate("document.documentElement.scrollHeight")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return base64.b64decode(self.call("Page.captureScreenshot", session=True, format="png")["data"])

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # the pipe may close before the reply comes
            self.call("Browser.close")
        self.process.wait(timeout=30)
        os.close(self._write)
        os.close(self._read)


PIXEL_COUNT = """
(async () => {
  const image = new Image();
  image.src = "data:image/png;base64,%s";
  await image.decode();
  const canvas = Object.assign(document.createElement("canvas"), {width: image.width, height: image.height});
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const colors = %s, boxes = %s;
  return boxes.map(box => {
    const pixels = context.getImageData(box.x, box.y, box.width, box.height).data;
    let count = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      const distance = c => [0, 1, 2].reduce((sum, k) => sum + Math.abs(pixels[i + k] - c[k]), 0);
      count += colors.some(c => distance(c) < 30) ? 1 : 0;
    }
    return count;
  });
})()
"""


def data_pixels(browser: Chromium, png: bytes, boxes: list[dict[str, int]], colors: list[str]) -> list[int]:
    """Per box, the screenshot's pixels painted in a data color (bars and lines, not axes or text). The
    PNG is decoded by an <img> on a blank page and read back from a canvas."""
    rgb = [[int(color[i : i + 2], 16) for i in (1, 3, 5)] for color in colors]
    browser.load("about:blank")
    script = PIXEL_COUNT % (base64.b64encode(png).decode(), json.dumps(rgb), json.dumps(boxes))
    return browser.evaluate(script, wait=True)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory) -> Chromium:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); CI installs it in set-up")
    browser = Chromium(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield browser
    browser.close()


def test_console_errors_are_detected(chromium, tmp_path):
    """The control: a broken page does report, so an empty list below means a clean page."""
    broken = tmp_path / "broken.html"
    broken.write_text('<img src="missing.png"><script>console.error("planted"); undefined_call();</script>')
    chromium.load(broken.as_uri())
    messages = chromium.console_messages()
    assert any("planted" in message for message in messages)
    assert any("undefined_call" in message for message in messages)


def chart_boxes(browser: Chromium) -> list[dict[str, Any]]:
    """Every chart of the loaded page (legends aside): its label and its box on the page."""
    return browser.evaluate(
        "[...document.querySelectorAll('svg')].filter(svg => svg.getAttribute('aria-label') !== 'legend')"
        ".map(svg => { const r = svg.getBoundingClientRect(); return {label: svg.getAttribute('aria-label'),"
        " x: Math.round(r.x + scrollX), y: Math.round(r.y + scrollY), width: Math.round(r.width),"
        " height: Math.round(r.height)}; })"
    )


def test_chromium_loads_the_report_cleanly_and_paints_every_chart(chromium, root, page, tmp_path):
    chromium.load((root / "report.html").as_uri())
    assert chromium.console_messages() == []
    boxes = chart_boxes(chromium)
    assert len(boxes) == page.count("<svg") - page.count('aria-label="legend"')
    png = chromium.screenshot(width=1280)
    (tmp_path / "report.png").write_bytes(png)
    width, height = struct.unpack(">II", png[16:24])
    assert width == 1280
    assert all(
        box["width"] > 300 and box["height"] > 40 and box["y"] + box["height"] <= height for box in boxes
    )
    counts = data_pixels(chromium, png, boxes, [KEPT, REMOVED, VAL])
    blank = [box["label"] for box, count in zip(boxes, counts, strict=True) if count < 40]
    assert blank == []


def test_chromium_paints_pretraining_and_fine_tuning_side_by_side(chromium, tmp_path):
    root = tmp_path / "root"
    _write_training(root, "train/tiny", METRICS)
    _write_training(root, "sft", SFT_METRICS, SFT_DATA)
    chromium.load(Path(write_report(str(root), S3)).as_uri())
    assert chromium.console_messages() == []
    boxes = [box for box in chart_boxes(chromium) if box["label"].startswith("loss curve")]
    assert [box["label"] for box in boxes] == [
        "loss curve train/tiny/metrics.jsonl",
        "loss curve sft/metrics.jsonl",
    ]
    pretraining, fine_tuning = boxes
    assert pretraining["y"] == fine_tuning["y"]
    assert pretraining["x"] + pretraining["width"] < fine_tuning["x"]
    assert fine_tuning["x"] + fine_tuning["width"] <= 1280
    png = chromium.screenshot(width=1280)
    assert all(count >= 40 for count in data_pixels(chromium, png, boxes, [KEPT, REMOVED]))


def _select_stats() -> dict[str, Any]:
    """stats/select.json as `tokenmill select --keep-top 0.1 --buckets 2` writes it, for 1,000 documents
    of which 100 kept, 880 below the threshold and 20 without a score."""
    from tokenmill.pipeline.select import histogram_edges, selection_stats

    kept, removed = [0] * 50, [0] * 50
    kept[45:50] = [20] * 5
    removed[0:44] = [20] * 44
    return selection_stats(
        by="score_demo",
        keep_top=0.1,
        min_score=None,
        threshold=0.9,
        docs_in=1_000,
        kept=100,
        removed={"no_score": 20, "below_threshold": 880},
        ties={"documents": 3, "kept": 1},
        buckets=2,
        bucket_edges=[0.95],
        bucket_sizes=[50, 50],
        histogram={"edges": histogram_edges(0.0, 1.0), "kept": kept, "removed": removed},
    )


def test_selection_histogram_shows_the_threshold_kept_and_removed(tmp_path):
    assert 'id="select"' not in render(str(tmp_path), S3)  # no select stage, no section
    (tmp_path / "stats").mkdir()
    (tmp_path / "stats" / "select.json").write_text(json.dumps(_select_stats()))
    selection = _section(render(str(tmp_path), S3), "select")
    assert _histogram_sums(selection) == Counter({"kept": 100, "removed": 880})
    assert 'aria-label="histogram of score_demo"' in selection
    lines = re.findall(r"<line [^>]*><title>([^<]+)</title></line>", selection)
    assert lines == ["threshold (--keep-top 0.1) = 0.9"]
    rows = dict(re.findall(r"<tr><td>([^<]*)</td><td[^>]*>([^<]*)</td>", selection))
    assert rows["kept"] == "100" and rows["removed: no_score"] == "20" and rows["achieved fraction of scored"]
    buckets = re.findall(
        r'<tr><td class="num">(\d)</td><td class="num">([\d,]+)</td><td[^>]*>([^<]*)</td></tr>', selection
    )
    assert buckets == [("0", "50", "0.95"), ("1", "50", "–")]
    assert "20 documents without a score not drawn" in selection


def test_funnel_has_a_select_step_between_dedup_and_tokenize():
    ingest = {"records": 1_200, "dropped": {"c4:too_few_sentences": 100}, "errors": {}}
    dedup = {"docs_in": 1_100, "exact_duplicates": 100, "fuzzy_duplicates": 0}
    dedup |= {"url_duplicates": 0, "prior_duplicates": 0}
    tokens = {"counts": {"documents_in": 100, "skipped": {"empty_text": 0}}}
    steps = funnel(ingest, dedup, tokens, _select_stats())
    assert [(s.stage, s.records_in, s.records_out) for s in steps][-2:] == [
        ("select", 1_000, 100),
        ("tokenize", 100, 100),
    ]
    assert steps[-2].reasons == {"no_score": 20, "below_threshold": 880}
