"""Run reports and sweep indexes: built from real runs' manifests, rebuilt by `mora-admin report`, read in Chromium.

The runs are model-free (a synthetic video measured, joined, cut into a frame; a failing node and
the node it starves), so every node status appears in seconds. The browser tests load the pages
from disk in a real headless Chromium (the Debian package; `.ci/run` installs it and sets
MORA_REQUIRE_BROWSER=1 so CI never skips them), check the elements and that the videos report
their duration, and check the screenshots are not blank.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import engine_agents
import numpy as np
import pytest
import yaml
from entry_points import agent_env
from mora_inproc import ECHO_GRAPH as ECHO
from PIL import Image

from mora.engine.cache.media import Frames, frames_blob, load_video_file, write_mp4
from mora.engine.cache.store import Store
from mora.engine.frontends import api
from mora.engine.frontends.admin import main as admin
from mora.engine.frontends.report import previews, rebuild, write_run_report
from mora.engine.frontends.report.sweep import layout

GRAPH = """
mora: 1
inputs:
  video: {type: video}
  index: {type: number, default: 0}
  fps: {type: number, default: 8}
  word: {type: text, default: "hello"}
nodes:
  join:
    agent: video_concat
    in: {videos: [{input: video}, {input: video}]}
    params: {fps: {input: fps}}
  quality:
    agent: video_quality
    in: {video: {from: join.video}}
  frame:
    agent: frame_pick
    in: {video: {from: join.video}}
    params: {index: {input: index}}
  caption:
    agent: text_template
    in: {text: {input: word}}
    params: {template: "a <b>{text}</b>"}
outputs:
  video: {from: join.video}
  keyframe: {from: frame.image}
  caption: {from: caption.text}
  dynamic_degree: {from: quality.dynamic_degree}
  temporal_flicker: {from: quality.temporal_flicker}
"""
FAILING = GRAPH.replace("outputs:\n", """  broken:
    agent: t_fail
    params: {message: "<script>alert(1)</script> went wrong"}
  starved:
    agent: t_add
    in: {a: {from: broken.value}, b: {from: broken.value}}
outputs:
  total: {from: starved.value}
""")


class Elements(HTMLParser):
    """Every start tag with its attributes, in order (enough to query a page without a DOM library)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))

    def all(self, tag: str, cls: str | None = None, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.found if t == tag and (cls is None or cls in a.get("class", "").split())
                and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 6-frame clip of a bright bar moving right."""
    frames = np.zeros((6, 48, 64, 3), np.uint8)
    for t in range(6):
        frames[t, :, 8 * t:8 * t + 12] = (250, 200, 40)
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    write_mp4(Frames(frames, 6.0), path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, clip) -> tuple[Path, Path]:
    """The failing graph run twice in this process: (first run, second run with cache hits)."""
    root = tmp_path_factory.mktemp("runs")
    (root / "graph.yaml").write_text(FAILING)
    plan = api.load_plan(root / "graph.yaml", {"video": str(clip)}, registry=engine_agents.registry())
    store = Store(root / "cache")
    first, second = (api.run(plan, store=store, preset={"name": "test", "roles": {}}, run_dir=root / name, quiet=True,
                             runtime={"name": "local", "device": "cpu"}) for name in ("first", "second"))
    assert first.manifest["failed"] == ["broken"] and second.manifest["skipped"] == ["starved"]
    return write_run_report(first.run_dir).parent, write_run_report(second.run_dir).parent


def test_run_report_draws_every_node_and_edge_coloured_by_status(runs):
    first, second = runs
    manifest = json.loads((first / "manifest.json").read_text())
    page = Elements((first / "report.html").read_text())
    drawn = {a["data-node"]: a["data-status"] for a in page.all("g", "node")}
    assert drawn == {"join": "computed", "quality": "computed", "frame": "computed", "caption": "computed",
                     "broken": "failed", "starved": "skipped"}
    assert len(page.all("path", "edge")) == len(manifest["edges"]) == 3  # two links broken -> starved: one edge
    again = {a["data-node"]: a["data-status"] for a in Elements((second / "report.html").read_text()).all("g", "node")}
    assert again == {**drawn, "join": "cached", "quality": "cached", "frame": "cached", "caption": "cached"}


def test_run_report_timeline_has_a_bar_per_node_that_ran_and_a_lane_for_cache_hits(runs):
    first, second = runs
    bars = {a["data-node"] for a in Elements((first / "report.html").read_text()).all("g", "bar")}
    assert bars == {"join", "quality", "frame", "caption", "broken"}
    page = Elements((second / "report.html").read_text())
    assert {a["data-lane"] for a in page.all("g", "lane")} == {"cpu / main", "cache"}
    assert {a["data-node"] for a in page.all("g", "hit")} == {"join", "quality", "frame", "caption"}


def test_run_report_shows_outputs_inline_and_escapes_user_text(runs):
    first, _ = runs
    text = (first / "report.html").read_text()
    page = Elements(text)
    kinds = {a["data-output"]: a["class"].split()[-1] for a in page.all("div", "output")}
    assert kinds == {"video": "kind-video", "keyframe": "kind-image", "caption": "kind-text",
                     "dynamic_degree": "kind-number", "temporal_flicker": "kind-number"}
    assert page.all("video", src="video.mp4") and page.all("img", src="keyframe.png")
    assert page.all("img", "preview")[0]["src"].startswith("data:image/webp;base64,")
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; went wrong" in text
    assert "a &lt;b&gt;hello&lt;/b&gt;" in text  # the caption output, as text


def test_reports_are_self_contained(runs):
    for run_dir in runs:
        page = Elements((run_dir / "report.html").read_text())
        links = [a.get("src") or a.get("href") for _, a in page.found if a.get("src") or a.get("href")]
        assert links
        for link in links:
            assert link.startswith("data:") or (run_dir / link).is_file(), link
        assert not page.all("link") and not [a for a in page.all("script") if "src" in a]


def test_a_node_row_says_agent_model_seed_params_seconds_and_error(runs):
    first, _ = runs
    text = (first / "report.html").read_text()
    assert '<tr data-node="quality">' in text and '<tr data-node="broken">' in text
    row = text.split('<tr data-node="frame">')[1].split("</tr>")[0]
    assert "frame_pick" in row and '"index": 0' in row and 'class="status status-computed"' in row
    assert re.search(r'<td class="num" data-value="[0-9.e-]+">[0-9.]+</td>', row)  # its seconds
    broken = text.split('<tr data-node="broken">')[1].split("</tr>")[0]
    assert 'class="error">RuntimeError: &lt;script&gt;' in broken


def test_admin_report_rebuilds_a_run_report_and_refuses_other_folders(runs, tmp_path, capsys):
    first, _ = runs
    (first / "report.html").unlink()
    assert admin(["report", str(first)]) == 0
    assert (first / "report.html").is_file() and str(first / "report.html") in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert admin(["report", str(tmp_path / "empty")]) == 2
    assert "neither a run directory" in capsys.readouterr().err
    assert admin(["report", str(tmp_path / "missing")]) == 2


def test_a_videos_preview_is_decoded_once_by_its_digest_and_again_when_its_bytes_change(tmp_path, clip, monkeypatch):
    monkeypatch.setattr(previews, "PREVIEWS_DIR", tmp_path / "kept")
    decoded: list[Path] = []
    read_video = previews.read_video
    monkeypatch.setattr(previews, "read_video", lambda path: decoded.append(path) or read_video(path))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(clip, tmp_path / name / "video.mp4")
        (tmp_path / name / "manifest.json").write_text(json.dumps({"outputs": {"video": "video.mp4"}, "nodes": {}}))
    first, again = (Elements(write_run_report(tmp_path / name).read_text()) for name in ("a", "b"))
    assert decoded == [tmp_path / "a" / "video.mp4"]  # the second report found the pair kept for the same bytes
    shown = [(p.all("img", "preview")[0]["src"], p.all("video")[0]["poster"]) for p in (first, again)]
    assert shown[0] == shown[1] and shown[0][0].startswith("data:image/webp;base64,")
    next((tmp_path / "kept").glob("*.json")).write_text('["junk", 1]')
    write_run_report(tmp_path / "b")  # a damaged kept pair is decoded again, never shown
    assert len(decoded) == 2
    frames = load_video_file(clip)
    write_mp4(Frames(frames.array[::-1].copy(), frames.fps), tmp_path / "b" / "video.mp4")
    monkeypatch.setattr(previews, "KEPT_PREVIEWS", 1)
    changed = Elements(write_run_report(tmp_path / "b").read_text())
    assert len(decoded) == 3 and changed.all("img", "preview")[0]["src"] != shown[0][0]
    (kept,) = (tmp_path / "kept").iterdir()  # only the most recent pair is kept past the limit
    assert json.loads(kept.read_text())[0] == changed.all("img", "preview")[0]["src"]


def test_a_sparse_manifest_and_a_frame_store_video_still_give_a_report(tmp_path):
    """Fields read by key: an older manifest with most fields missing renders; a frame store gets a preview."""
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    frames[1] = 255
    (tmp_path / "video.safetensors").write_bytes(frames_blob(frames, 4.0).data)
    (tmp_path / "manifest.json").write_text(json.dumps({
        "outputs": {"video": "video.safetensors"}, "b": "junk", "nodes": {
            "a": {"agent": "x", "status": "done", "started": "2026-11-25T19:00:00+00:00", "seconds": 2.0,
                  "device": "cuda:0", "worker": "w0"},
            "b": "junk"}}))
    page = Elements(write_run_report(tmp_path).read_text())
    assert not page.all("video") and page.all("img", "preview")  # no <video> for a frame store: the preview only
    assert {a["data-node"] for a in page.all("g", "node")} == {"a", "b"}
    assert [a["data-lane"] for a in page.all("g", "lane")] == ["cuda:0 / w0"]  # an ISO 8601 start time is a time too
    (tmp_path / "manifest.json").write_text("{not json")
    assert admin(["report", str(tmp_path)]) == 2


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, clip) -> Path:
    """A basic-launcher sweep over three axes (two in the grid, one as facets) with an objective."""
    root = tmp_path_factory.mktemp("sweep")
    graph = root / "graph.yaml"
    graph.write_text(GRAPH)
    env = {**os.environ, "MORA_CACHE_DIR": str(root / "cache"), "HOME": str(root)}
    result = subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", "-m",
                             f"graph_file={graph}", f"inputs.video={clip}", "inputs.index=0,-1", "inputs.fps=4,12",
                             "inputs.word=a,b", "objective=dynamic_degree", "runtime=local", "runtime.device=cpu",
                             "quiet=true", f"hydra.sweep.dir={root / 'out'}"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return root / "out"


def test_sweep_index_lays_out_two_axes_as_a_grid_and_the_third_as_facets(sweep):
    page = Elements((sweep / "index.html").read_text())
    assert len(page.all("h3", "facet")) == 2 and len(page.all("table", "grid")) == 2
    cells = page.all("div", "cell-job")
    assert sorted(int(a["data-job"]) for a in cells) == list(range(8))
    assert len(page.all("figure", "video")) == 8 and len(page.all("img", "keyframe")) == 8
    assert 'href="../index.html"' in (sweep / "0" / "report.html").read_text()  # a job's report links back


def test_sampled_values_are_cards_and_a_full_product_is_a_grid():
    def jobs(rows):
        return [SimpleNamespace(overrides=dict(zip(("a", "b", "c"), r))) for r in rows]

    sampled = layout(jobs([(str(0.1 * i), str(7 * i)) for i in range(6)]))  # Optuna: every value new
    assert sampled["axes"] == ["a", "b"] and not sampled["grid"]
    product = layout(jobs([(a, b, c) for a in "12" for b in "xyz" for c in "pq"]))
    assert product["grid"] and (product["row_axis"], product["col_axis"]) == ("a", "b")
    assert [title for title, _ in product["facets"]] == ["c=p", "c=q"]
    assert product["rows"] == ["1", "2"] and product["cols"] == ["x", "y", "z"]
    assert not layout(jobs([("1",), ("1",)]))["grid"]  # nothing varies: cards


def test_sweep_index_table_sorts_by_numbers_and_highlights_the_objective(sweep):
    text = (sweep / "index.html").read_text()
    page = Elements(text)
    assert [a["class"] for a in page.all("th", "objective")] == ["sortable objective default-sort"]
    best = page.all("tr", "best")
    values = {}
    for job in range(8):
        manifest = json.loads((sweep / str(job) / "manifest.json").read_text())
        values[job] = float((sweep / str(job) / manifest["outputs"]["dynamic_degree"]).read_text())
    assert len(best) == 1 and int(best[0]["data-job"]) == min(values, key=values.get)
    assert len([a for a in page.all("th", "sortable")]) >= 1 + 3 + 2 + 1  # job, three axes, two numbers, status


def test_contact_sheet_has_a_row_per_job_of_first_middle_last_frames(sweep):
    sheet = np.asarray(Image.open(sweep / "contact_sheet.png").convert("L"))
    assert sheet.shape[0] >= 8 * 128
    assert (sheet < 200).mean() > 0.05  # frames and labels, not an empty canvas


def test_admin_report_rebuilds_a_sweep(sweep):
    (sweep / "index.html").unlink()
    (sweep / "3" / "report.html").unlink()
    written = rebuild(sweep)
    assert sweep / "index.html" in written and (sweep / "3" / "report.html").is_file()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
browser = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("MORA_REQUIRE_BROWSER"),
                             reason="no Chromium on PATH (apt-get install chromium); CI requires it")


def chromium(page: Path, tmp: Path, *args: str) -> str:
    """Load a page from disk in headless Chromium, let its scripts and media settle, return stdout."""
    assert CHROMIUM, "Chromium is required (MORA_REQUIRE_BROWSER is set) but not on PATH"
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             "--mute-audio", "--no-first-run", f"--user-data-dir={tmp / 'chromium-profile'}",
                             "--virtual-time-budget=5000", "--window-size=1280,1600", *args, page.as_uri()],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def not_blank(png: Path) -> None:
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(float)
    assert pixels.shape[0] > 500 and pixels.std() > 20
    assert (pixels.min(axis=2) < 200).mean() > 0.05  # much more than a white page with a few words


@browser
def test_run_report_in_chromium_plays_its_video_and_is_not_blank(runs, tmp_path):
    first, _ = runs
    dom = Elements(chromium(first / "report.html", tmp_path, "--dump-dom"))
    assert len(dom.all("g", "node")) == 6 and dom.all("svg", "timeline")
    videos = dom.all("figure", "video")
    clip = load_video_file(first / "video.mp4")
    assert videos and all(float(v.get("data-duration", 0)) == pytest.approx(clip.count / clip.fps, abs=0.05)
                          for v in videos)
    assert not any(v.get("data-fallback") for v in videos)  # Chromium plays H.264: the preview stays hidden
    chromium(first / "report.html", tmp_path, f"--screenshot={tmp_path / 'run.png'}")
    not_blank(tmp_path / "run.png")


@browser
def test_sweep_index_in_chromium_plays_every_video_and_is_not_blank(sweep, tmp_path):
    dom = Elements(chromium(sweep / "index.html", tmp_path, "--dump-dom"))
    videos = dom.all("figure", "video")
    assert len(videos) == 8 and all(float(v.get("data-duration", 0)) > 0 for v in videos)
    assert dom.all("th", "sorted-asc")  # the script sorted the table by the objective on load
    chromium(sweep / "index.html", tmp_path, f"--screenshot={tmp_path / 'index.png'}")
    not_blank(tmp_path / "index.png")


def mora_sweep(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`mora -m ...` in a child process started in `cwd`, on the CPU, quiet, its cache in `cwd`."""
    env = env or {**os.environ, "MORA_CACHE_DIR": str(cwd / "cache"), "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", "-m",
                           "runtime=local", "runtime.device=cpu", "quiet=true", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def page_links(page: Path) -> list[str]:
    """Every href and src of a page that is not a data URI."""
    return [link for _, a in Elements(page.read_text()).found for link in (a.get("href"), a.get("src"))
            if link and not link.startswith("data:")]


def table_jobs(page: Path) -> list[str]:
    """The jobs in the order of an index's table of jobs."""
    return [a["data-job"] for a in Elements(page.read_text()).all("tr") if "data-job" in a]


def resolves(page: Path, link: str) -> Path:
    """The file a relative link of `page` names, after checking it is a plain path a browser reads as one."""
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.query, parts.fragment) == ("", "", "", ""), link
    target = Path(os.path.normpath(page.parent / unquote(parts.path)))
    assert target.is_file(), link
    return target


@pytest.mark.parametrize("launcher", ["mora", "basic"])
def test_a_sweep_with_a_failed_job_still_gets_its_index_and_contact_sheet(tmp_path, clip, launcher):
    (tmp_path / "graph.yaml").write_text(GRAPH)
    result = mora_sweep(tmp_path, "graph_file=graph.yaml", f"inputs.video={clip}", "inputs.index=0,500,1",
                        "objective=dynamic_degree", f"hydra/launcher={launcher}", "hydra.sweep.dir=sweep")
    sweep = tmp_path / "sweep"
    assert result.returncode == 1, result.stderr  # the sweep failed, and says which node
    assert "Traceback" not in result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]  # Hydra's launcher runs jobs one by one: the line names the job
    job = "job #1 (" if launcher == "basic" else ""
    assert last.startswith(f"mora: {job}") and last.endswith("error: 1 node(s) failed: frame"), last
    assert "inputs.index=500" in last if job else last == "mora: error: 1 node(s) failed: frame"
    assert f"mora: sweep index: {Path('sweep') / 'index.html'}" in result.stdout
    assert (sweep / "contact_sheet.png").is_file()
    text = (sweep / "index.html").read_text()
    assert table_jobs(sweep / "index.html") == ["0", "1", "2"]  # the jobs after the failure too
    assert [job for job in "012" if ">failed</td>" in text.split(f'<tr data-job="{job}"')[1].split("</tr>")[0]] == ["1"]
    back = Elements((sweep / "1" / "report.html").read_text()).all("a", id="sweep-index")[0]["href"]
    assert resolves(sweep / "1" / "report.html", back) == sweep / "index.html"  # the failed job's report links back


@pytest.mark.parametrize("launcher", ["basic", "mora"])
def test_an_interrupted_sweep_indexes_what_finished_without_a_traceback(tmp_path, launcher):
    """Ctrl-C while job 1 runs: the basic launcher has finished job 0, which is indexed; the Mora launcher none."""
    env = agent_env(tmp_path)
    log = tmp_path / "started.log"
    (tmp_path / "slow.yaml").write_text(yaml.safe_dump({
        "inputs": {"seconds": {"type": "number"}},
        "nodes": {"slow": {"agent": "p_count", "params": {"tag": "slow", "seconds": {"input": "seconds"},
                                                          "log": str(log)}}},
        "outputs": {"out": {"from": "slow.text"}}}))
    interruptible = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    proc = subprocess.Popen([sys.executable, "-c", interruptible + "from mora.engine.frontends.cli import main; main()",
                             "-m", "graph_file=slow.yaml", "inputs.seconds=0,60", "runtime=local", "runtime.device=cpu",
                             "quiet=true", f"hydra/launcher={launcher}", "hydra.sweep.dir=sweep"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = 2 if launcher == "basic" else 1  # the merged graph runs its second node only when the first is done
    deadline = time.time() + 60
    while (not log.exists() or len(log.read_text().splitlines()) < started) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err and err.strip().splitlines()[-1] == "mora: interrupted"
    index = tmp_path / "sweep" / "index.html"
    if launcher == "basic":
        assert table_jobs(index) == ["0"]
    else:
        assert not index.exists()  # no job had finished: nothing to index


@pytest.fixture(scope="module")
def encoded_sweep(tmp_path_factory, clip) -> Path:
    """A Mora-launcher sweep whose job folders are named by their overrides: `#`, `?`, `%`, a space and a `/`."""
    root = tmp_path_factory.mktemp("encoded")
    (root / "graph.yaml").write_text(GRAPH)
    shutil.copy(clip, root / "clip.mp4")
    result = mora_sweep(root, "graph_file=graph.yaml", "inputs.video=clip.mp4", "objective=dynamic_degree",
                        "inputs.word='a#b','c?d','e%41f','g h','i/j'", "hydra/launcher=mora", "hydra.sweep.dir=sweep",
                        "hydra.sweep.subdir=${hydra.job.override_dirname}",
                        "hydra.job.config.override_dirname.exclude_keys=[graph_file,inputs.video,objective,runtime,"
                        "runtime.device,quiet]")
    assert result.returncode == 0, result.stderr
    return root / "sweep"


def test_sweep_index_links_are_url_encoded_and_find_jobs_at_any_depth(encoded_sweep):
    jobs = sorted(p.parent.relative_to(encoded_sweep).as_posix() for p in encoded_sweep.rglob("manifest.json"))
    assert len(jobs) == 5 and any(job.count("/") == 1 for job in jobs)  # 'i/j' nests its job a level deeper
    index = encoded_sweep / "index.html"
    links = page_links(index)
    reports = {resolves(index, link).parent for link in links if link.endswith("/report.html")}
    media = [resolves(index, link) for link in links if link.endswith((".mp4", ".png"))]
    assert reports == {encoded_sweep / job for job in jobs} and sorted(table_jobs(index)) == jobs
    assert len(media) >= 2 * 5  # each job's keyframe and video, each by a link the browser reads as that file
    for job in jobs:  # each job's report links back to the index, and to its own files
        report = encoded_sweep / job / "report.html"
        back = Elements(report.read_text()).all("a", id="sweep-index")[0]["href"]
        assert resolves(report, back) == index
        assert all(resolves(report, link) for link in page_links(report))


def test_jobs_in_nested_folders_are_indexed_and_link_back(tmp_path):
    (tmp_path / "graph.yaml").write_text(yaml.safe_dump(ECHO))
    result = mora_sweep(tmp_path, "graph_file=graph.yaml", "prompt=cat,dog,owl", "hydra/launcher=mora",
                        "hydra.sweep.dir=sweep", "hydra.sweep.subdir=${hydra.job.num}/run")
    assert result.returncode == 0, result.stderr
    index = tmp_path / "sweep" / "index.html"
    assert table_jobs(index) == ["0/run", "1/run", "2/run"]
    report = tmp_path / "sweep" / "1" / "run" / "report.html"
    assert Elements(report.read_text()).all("a", id="sweep-index")[0]["href"] == "../../index.html"


def test_an_unreadable_job_is_named_in_the_index_and_a_link_out_of_the_sweep_is_not_followed(
        encoded_sweep, tmp_path, caplog):
    sweep = tmp_path / "sweep"
    shutil.copytree(encoded_sweep, sweep, symlinks=True)
    damaged = next(p.parent for p in sweep.glob("*#*/manifest.json"))
    (damaged / "manifest.json").write_text("{not json")
    outside = tmp_path / "elsewhere"
    shutil.copytree(next(p.parent for p in sweep.glob("*%*/manifest.json")), outside / "job")
    (sweep / "linked").symlink_to(outside, target_is_directory=True)
    (sweep / "linked-job").symlink_to(outside / "job", target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="mora.report"):
        written = rebuild(sweep)
    assert sweep / "index.html" in written
    text = (sweep / "index.html").read_text()
    page = Elements(text)
    assert len(table_jobs(sweep / "index.html")) == 4 and "linked" not in text  # the links were not followed
    assert [a["data-job"] for a in page.all("li")] == [damaged.name]
    assert "not a readable manifest" in text.split('id="unreadable"')[1]
    assert any(damaged.name in r.getMessage() and "not in the sweep index" in r.getMessage() for r in caplog.records)


@browser
def test_an_encoded_sweep_index_plays_every_video_in_chromium(encoded_sweep, tmp_path):
    dom = Elements(chromium(encoded_sweep / "index.html", tmp_path, "--dump-dom"))
    videos = dom.all("figure", "video")
    assert len(videos) == 5 and all(float(v.get("data-duration", 0)) > 0 for v in videos)  # every src loads
