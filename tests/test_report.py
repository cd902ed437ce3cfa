"""The run report: sections from a fake run directory, graceful gaps, escaping, atomic writes,
the ``pyxfer report`` command, and rendering in a real headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyxfer.cli import main
from pyxfer.report import write_report

EVIL = "<script>alert('x')</script>"
SECTIONS = (
    "summary",
    "results",
    "curves",
    "accuracy",
    "views",
    "confusion",
    "features",
    "environment",
    "config",
)


class Page(HTMLParser):
    """What a report shows: sections (with their text), images, tables, tags seen."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.sections: dict[str, str] = {}
        self.images: dict[str, list[bytes]] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._section: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self._section = a["id"]
            self.sections[self._section] = ""
        elif tag == "img":
            src = a["src"] or ""
            assert src.startswith("data:image/png;base64,"), src[:40]
            png = base64.b64decode(src.split(",", 1)[1], validate=True)
            self.images.setdefault(self._section or "", []).append(png)
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables.setdefault(self._section or "", []).append(self._row)
            self._row = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._section:
            self.sections[self._section] += data
        if self._cell is not None:
            self._cell.append(data)


def _decode(png: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(png))
    im.load()
    return im


def make_run(path: Path, *, steps: int = 60) -> Path:
    """A run directory as the engine and evaluation leave it (tiny)."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    config = {
        "data": "digits",
        "views": "simclr",
        "size": 8,
        "seed": 3,
        "backbone": "resnet18",
        "objective": "simclr",
        "batch_size": 32,
        "lr": 0.01,
        "note": EVIL,
    }
    (path / "config.json").write_text(json.dumps(config))
    records = []
    for s in range(0, steps, 2):
        records.append(
            {
                "step": s,
                "epoch": s // 20,
                "loss": float(3 * np.exp(-s / 30) + 0.1 * rng.random()),
                "loss_align": float(1 + 0.1 * rng.random()),
                "loss_uniform": -2 + s / 100,
                "lr": 0.01 * min(1.0, s / 10),
                "images_per_s": 800.0 + s,
                "loader_wait_frac": 0.1,
                "time": s * 0.5,
            }
        )
        if s % 20 == 0:
            records.append({"step": s, "epoch": s // 20, "knn_top1": 0.3 + s / 200})
    records.append(
        {"event": "end", "stop_reason": "max_steps", "step": steps, "time": 31.5, "knn_top1": 0.7}
    )
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    results = [
        {"metric": "linear_probe_top1", "value": 0.8731, "protocol": {"labels_per_class": 5}},
        {"metric": "knn_top1", "value": 0.7, "protocol": {"k": 20, "split": EVIL}},
    ]
    (path / "results.json").write_text(json.dumps(results))
    y = rng.integers(0, 4, 120)
    pred = np.where(rng.random(120) < 0.75, y, rng.integers(0, 4, 120))
    names = np.array(["zero", "one", "two", EVIL])
    np.savez(path / "predictions.npz", y_true=y, y_pred=pred, class_names=names)
    np.savez(path / "features.npz", features=rng.normal(size=(120, 8)) + 3 * np.eye(8)[y], labels=y)
    return path


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = make_run(tmp_path_factory.mktemp("report") / "run")
    out = write_report(run)
    return run, out.read_text(encoding="utf-8")


def test_full_run_has_every_section_with_images(full_run: tuple[Path, str]) -> None:
    run, text = full_run
    assert (run / "report.html").is_file()
    page = Page(text)
    assert list(page.sections) == list(SECTIONS)
    for name in SECTIONS:
        assert "Not available" not in page.sections[name], (name, page.sections[name])
    # one picture per plotted section, each a decodable PNG of a sensible size
    expected = {"curves": 2, "accuracy": 1, "views": 1, "confusion": 1, "features": 1}
    assert {k: len(v) for k, v in page.images.items()} == expected
    for pngs in page.images.values():
        for png in pngs:
            im = _decode(png)
            assert im.width >= 100 and im.height >= 100
            assert np.asarray(im.convert("L")).std() > 5  # not a blank picture
    # the page is self-contained: no external resources, no script of its own
    assert "script" not in page.tags and "link" not in page.tags
    assert "http://" not in text and "https://" not in text


def test_results_table_shows_values_and_protocols(full_run: tuple[Path, str]) -> None:
    rows = Page(full_run[1]).tables["results"]
    assert rows[0] == ["metric", "value", "protocol"]
    assert rows[1][:2] == ["linear_probe_top1", "0.8731"]
    assert "labels_per_class=5" in rows[1][2]
    assert rows[2][0] == "knn_top1" and "k=20" in rows[2][2]


def test_summary_reads_config_and_metrics(full_run: tuple[Path, str]) -> None:
    summary = Page(full_run[1]).sections["summary"]
    for expected in ("digits", "resnet18", "max_steps", "60", "31.5 s", "images/s"):
        assert expected in summary, expected
    env = dict(Page(full_run[1]).tables["environment"])
    assert env["pyxfer.version"] == __import__("pyxfer").__version__
    assert "packages.numpy" in env


def test_text_is_escaped(full_run: tuple[Path, str]) -> None:
    _, text = full_run
    assert EVIL not in text  # only the escaped form is in the file
    page = Page(text)
    assert "script" not in page.tags
    assert EVIL in page.sections["config"]  # shown as text
    assert EVIL in page.tables["results"][2][2]


def test_views_grid_shows_originals_beside_their_views(tmp_path: Path) -> None:
    from pyxfer.data import load_dataset
    from pyxfer.ops.augment import augment
    from pyxfer.report.views import _CELL, _GAP, _SEPARATOR, sample_images, views_grid

    store = load_dataset("digits")
    images, idx = sample_images(store, 3, seed=1)
    assert len(set(store.labels[idx])) == 3  # one per class
    png, n_views = views_grid(images, idx, "simclr", size=8, seed=5)
    grid = np.asarray(_decode(png).convert("L"))
    assert n_views == 2
    assert grid.shape == (3 * _CELL + 2 * _GAP, 3 * _CELL + 2 * _GAP + _SEPARATOR)
    f = _CELL // 8  # digits are 8x8, upscaled by nearest neighbour
    pad = (_CELL - 8 * f) // 2
    views = augment(images, "simclr", indices=idx, seed=5, size=8, mean=(0.0,), std=(1.0,))[0]
    for row, img in enumerate(images):
        y0 = row * (_CELL + _GAP) + pad
        cell = grid[y0 : y0 + 8 * f : f, pad : pad + 8 * f : f]
        np.testing.assert_array_equal(cell, img[..., 0])  # the original, unchanged
        for v in range(2):
            x0 = _CELL + _GAP + _SEPARATOR + v * (_CELL + _GAP) + pad
            cell = grid[y0 : y0 + 8 * f : f, x0 : x0 + 8 * f : f].astype(int)
            want = np.rint(views[row * 2 + v, 0] * 255).astype(int)  # un-normalised view
            np.testing.assert_array_equal(cell, want)
            assert not np.array_equal(cell, img[..., 0])  # the augmentation did something


def test_views_grid_handles_multi_crop_and_ragged_colour_images() -> None:
    from pyxfer.report.views import _CELL, _GAP, _SEPARATOR, views_grid

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (30 + 7 * i, 41, 3), dtype=np.uint8) for i in range(2)]
    opts = {"local_size": 12, "n_local": 3}
    png, n_views = views_grid(images, [4, 9], "dino", size=20, seed=1, preset_options=opts)
    assert n_views == 2 + 3  # two global views, three local ones
    grid = _decode(png)
    assert grid.size == (6 * _CELL + 5 * _GAP + _SEPARATOR, 2 * _CELL + _GAP)
    assert np.asarray(grid).std(axis=(0, 1)).min() > 10  # colour kept in every channel


def test_empty_run_dir_still_gets_a_report(tmp_path: Path) -> None:
    out = write_report(tmp_path)
    assert out == tmp_path / "report.html"
    page = Page(out.read_text(encoding="utf-8"))
    assert list(page.sections) == list(SECTIONS)
    for name in SECTIONS:
        if name != "environment":  # always known: where the report was made
            assert "Not available" in page.sections[name], name
    assert not page.images


def test_partial_run_uses_what_exists(tmp_path: Path) -> None:
    """A crashed run: torn last line, no end record, results as a dict, ready-made PNGs."""
    run = make_run(tmp_path / "run", steps=10)
    lines = (run / "metrics.jsonl").read_text().splitlines()[:-1]  # drop the end record
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 12, "lo')
    (run / "predictions.npz").unlink()
    (run / "features.npz").unlink()
    (run / "results.json").write_text(json.dumps({"results": [{"metric": "acc", "value": 0.5}]}))
    (run / "eval").mkdir()
    buf = io.BytesIO()
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (48, 1))).save(buf, format="PNG")
    (run / "eval" / "confusion.png").write_bytes(buf.getvalue())
    (run / "config.json").write_text(
        json.dumps({"data": "no-such-source:x", "views": "simclr", "size": 8})
    )
    (run / "environment.json").write_text(json.dumps({"pyxfer": {"version": "9.9"}}))
    page = Page(write_report(run).read_text(encoding="utf-8"))
    assert page.tables["environment"] == [["pyxfer.version", "9.9"]]  # the run's own record
    assert "1 unreadable line" in page.sections["summary"]
    assert "No end record" in page.sections["summary"]
    assert page.tables["results"][1][:2] == ["acc", "0.5"]
    assert page.images["confusion"] == [buf.getvalue()]  # embedded as it was
    assert "Not available" in page.sections["features"]
    assert "cannot load data set 'no-such-source:x'" in page.sections["views"]
    assert len(page.images["curves"]) == 2


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "run", steps=6)
    (run / "report.html").write_text("previous report")

    def fail(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("pyxfer.fileio.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(run)
    assert (run / "report.html").read_text() == "previous report"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []

    (run / "report.html").unlink()
    with pytest.raises(OSError, match="disk full"):
        write_report(run)
    assert not (run / "report.html").exists()


def test_not_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run_dir: expected an existing run directory"):
        write_report(tmp_path / "missing")


def test_cli_regenerates_and_prints_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "run", steps=6)
    assert main(["report", str(run)]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out == run / "report.html" and out.is_file()
    assert "linear_probe_top1" in out.read_text(encoding="utf-8")
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "run_dir: expected an existing run directory" in capsys.readouterr().err


# -- a real browser ---------------------------------------------------------------------------

CHECKER = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) {
    return i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 50;
  }).length;
  var table = document.querySelector("#results table");
  var b = document.body;
  b.setAttribute("data-images", imgs.length);
  b.setAttribute("data-decoded", ok);
  b.setAttribute("data-result-rows", table ? table.tBodies[0].rows.length : -1);
  b.setAttribute("data-table-height", table ? Math.round(table.getBoundingClientRect().height)
                                            : 0);
  var th = document.querySelector("#results thead th");
  b.setAttribute("data-head-colour", th ? getComputedStyle(th).backgroundColor : "");
});
</script>"""
BROKEN_IMG = '<img src="data:image/png;base64,AAAA" alt="broken">'


def _chromium() -> str | None:
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _browser(exe: str, tmp: Path, *args: str) -> str:
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
        *args,
    ]
    env = {**os.environ, "HOME": str(tmp)}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _body_attrs(dom: str) -> dict[str, str]:
    found: dict[str, str] = {}

    class Body(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "body":
                found.update({k: v or "" for k, v in attrs})

    Body().feed(dom)
    return found


def test_renders_in_headless_chromium(full_run: tuple[Path, str], tmp_path: Path) -> None:
    exe = _chromium()
    if exe is None:
        pytest.skip("needs Chromium (/usr/bin/chromium, or chromium / chromium-browser on PATH)")
    run, text = full_run
    # the report has no script: the test loads a copy with a checker appended
    checked = tmp_path / "checked.html"
    checked.write_text(text.replace("</body>", CHECKER + "</body>"), encoding="utf-8")
    attrs = _body_attrs(_browser(exe, tmp_path, "--dump-dom", checked.as_uri()))
    assert attrs["data-images"] == "6"
    assert attrs["data-decoded"] == "6"  # every embedded PNG decoded and laid out
    assert attrs["data-result-rows"] == "2"
    assert int(attrs["data-table-height"]) > 40
    assert attrs["data-head-colour"] == "rgb(238, 243, 251)"  # the inline CSS applied

    # the checker can fail: a broken image is not counted as decoded
    control = tmp_path / "control.html"
    control.write_text(text.replace("</body>", BROKEN_IMG + CHECKER + "</body>"), "utf-8")
    attrs = _body_attrs(_browser(exe, tmp_path, "--dump-dom", control.as_uri()))
    assert (attrs["data-images"], attrs["data-decoded"]) == ("7", "6")

    # the untouched report as a user sees it: dark header, then the results table's colours
    shot = tmp_path / "shot.png"
    _browser(
        exe,
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1200,1400",
        "--hide-scrollbars",
        (run / "report.html").as_uri(),
    )
    pix = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    assert pix.std() > 20  # not blank

    def share(colour: tuple[int, int, int]) -> float:
        return float(np.mean(np.abs(pix - np.array(colour)).sum(1) <= 6))

    assert share((0x18, 0x22, 0x2C)) > 0.03  # the header band
    assert share((0xEE, 0xF3, 0xFB)) > 0.002  # the results table's head row
