"""`mora-admin report` on folders holding hostile files: FIFOs, devices, huge files where a run's files belong.

Each case runs the real command in its own process, under a time limit (a FIFO once hung it) and an
address-space limit (/dev/zero once filled memory), and checks the exit status, that the hostile
file is named with why, and that the normal files beside it are still reported.
"""
from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ADMIN = Path(sys.executable).parent / "mora-admin"
TIME_LIMIT = 60
MEMORY_LIMIT = 2 << 30
"""A report needs a few hundred MiB; a reader that slurps /dev/zero hits this instead of the machine's memory."""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def report(folder: Path) -> subprocess.CompletedProcess[str]:
    """`mora-admin report FOLDER`, failing the test if it does not finish in `TIME_LIMIT` seconds."""
    env = {**os.environ, "XDG_CACHE_HOME": str(folder.parent / "user-cache")}
    try:
        return subprocess.run([ADMIN, "report", str(folder)], capture_output=True, text=True, timeout=TIME_LIMIT,
                              env=env, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mora-admin report {folder} did not finish in {TIME_LIMIT} s")


def run_dir(folder: Path, outputs: dict[str, str]) -> Path:
    """A run folder whose manifest lists `outputs`, with a normal caption beside them."""
    folder.mkdir()
    (folder / "caption.txt").write_text("a fox at dawn")
    manifest = {"ok": True, "outputs": {"caption": "caption.txt", **outputs}, "nodes": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def sweep_dir(folder: Path) -> Path:
    """A sweep of two jobs, each with its overrides, config and a number output."""
    folder.mkdir()
    (folder / "multirun.yaml").write_text("hydra:\n  sweeper:\n    direction: maximize\n")
    for job, seed in (("0", "1"), ("1", "2")):
        (folder / job / ".hydra").mkdir(parents=True)
        (folder / job / ".hydra" / "overrides.yaml").write_text(f"- seed={seed}\n")
        (folder / job / ".hydra" / "config.yaml").write_text("objective: score\n")
        (folder / job / "score.json").write_text(seed)
        (folder / job / "manifest.json").write_text(json.dumps({"outputs": {"score": "score.json"}, "nodes": {}}))
    return folder


def output_card(page: str, name: str) -> str:
    return page.split(f'data-output="{name}"')[1].split("</div>\n")[0]


@pytest.mark.parametrize("file", ["p.txt", "video.mp4", "n.json", "frames.safetensors", "still.png"])
def test_a_fifo_output_is_shown_unreadable_and_its_neighbours_are_reported(tmp_path, file):
    run = run_dir(tmp_path / "run", {"hostile": file})
    os.mkfifo(run / file)
    done = report(run)
    assert done.returncode == 0, done.stderr
    assert f"{file}: output path is a named pipe (FIFO), not a regular file" in done.stderr
    page = (run / "report.html").read_text()
    assert "unreadable: output path is a named pipe (FIFO), not a regular file" in output_card(page, "hostile")
    assert "a fox at dawn" in output_card(page, "caption")


def test_a_number_output_that_is_dev_zero_is_refused_within_memory(tmp_path):
    run = run_dir(tmp_path / "run", {"n": "n.json"})
    try:  # /dev/zero's own device, in the run folder (a link to /dev/zero is refused as outside it)
        os.mknod(run / "n.json", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD")
    done = report(run)
    assert done.returncode == 0, done.stderr
    assert "n.json: output path is a character device, not a regular file" in done.stderr
    page = (run / "report.html").read_text()
    assert "unreadable: output path is a character device" in output_card(page, "n")
    assert "a fox at dawn" in output_card(page, "caption")


def test_a_number_output_too_large_for_a_number_is_refused_by_its_size(tmp_path):
    run = run_dir(tmp_path / "run", {"n": "n.json"})
    with (run / "n.json").open("wb") as f:
        f.truncate(64 << 20)  # sparse: no disk used
    done = report(run)
    assert done.returncode == 0, done.stderr
    assert "n.json: output file is 64.0 MiB, larger than the 1.0 MiB allowed" in done.stderr
    assert "a fox at dawn" in output_card((run / "report.html").read_text(), "caption")


def test_a_number_output_nested_past_the_parsers_depth_is_shown_unreadable(tmp_path):
    run = run_dir(tmp_path / "run", {"n": "n.json"})
    (run / "n.json").write_text("[" * 100_000 + "]" * 100_000)
    done = report(run)
    assert done.returncode == 0, done.stderr
    page = (run / "report.html").read_text()
    assert "unreadable" in output_card(page, "n") and "a fox at dawn" in output_card(page, "caption")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge", "deep"])
def test_a_manifest_that_cannot_be_read_is_an_error_naming_it(tmp_path, kind):
    run = tmp_path / "run"
    run.mkdir()
    manifest = run / "manifest.json"
    if kind == "fifo":
        os.mkfifo(manifest)
    elif kind == "dev-zero":
        manifest.symlink_to("/dev/zero")
    elif kind == "huge":
        with manifest.open("wb") as f:
            f.truncate(1 << 30)
    else:
        manifest.write_text("[" * 100_000 + "]" * 100_000)
    done = report(run)
    assert done.returncode == 2, done.stderr
    why = {"fifo": "manifest path is a named pipe (FIFO), not a regular file",
           "dev-zero": "manifest path is a character device, not a regular file",
           "huge": "manifest file is 1.0 GiB, larger than the 64.0 MiB allowed",
           "deep": "not a readable manifest (maximum recursion depth exceeded while decoding a JSON array from a "
                   "unicode string)"}[kind]
    assert done.stderr.strip() == f"mora-admin: error: {manifest}: {why}"


def test_a_fifo_multirun_yaml_is_named_and_every_job_indexed(tmp_path):
    sweep = sweep_dir(tmp_path / "sweep")
    (sweep / "multirun.yaml").unlink()
    os.mkfifo(sweep / "multirun.yaml")
    done = report(sweep)
    assert done.returncode == 0, done.stderr
    assert "multirun.yaml: not read: multirun path is a named pipe (FIFO), not a regular file" in done.stderr
    index = (sweep / "index.html").read_text()
    assert '<li data-file="multirun.yaml"><code>multirun.yaml</code>: <span class="error">multirun path is a named ' \
           "pipe (FIFO), not a regular file</span></li>" in index
    assert index.count('<tr data-job="') == 2 and "(minimize)" in index  # the default direction, unsaid


@pytest.mark.parametrize("record", ["overrides.yaml", "config.yaml"])
def test_a_fifo_hydra_record_of_a_job_is_named_and_the_job_still_shown(tmp_path, record):
    sweep = sweep_dir(tmp_path / "sweep")
    hostile = sweep / "0" / ".hydra" / record
    hostile.unlink()
    os.mkfifo(hostile)
    done = report(sweep)
    assert done.returncode == 0, done.stderr
    assert f"0/.hydra/{record}: not read: " in done.stderr
    index = (sweep / "index.html").read_text()
    assert f'<li data-file="0/.hydra/{record}"><code>0/.hydra/{record}</code>: <span class="error">' \
           f"{record.removesuffix('.yaml')} path is a named pipe (FIFO), not a regular file</span>" in index
    assert index.count('<tr data-job="') == 2 and (sweep / "0" / "report.html").is_file()
    assert '<tr data-job="1" class="best">' in index  # the readable job's objective, maximised


@pytest.mark.parametrize("file", ["video.mp4", "frames.safetensors"])
def test_a_video_preview_refuses_a_fifo_that_replaced_the_checked_file(tmp_path, file):
    """The preview opens the video itself through the same reader: a file swapped for a FIFO after the run's view
    was read is refused too, not waited on."""
    os.mkfifo(tmp_path / file)
    code = ("import sys; from pathlib import Path; from mora.engine.errors import InputError; "
            "from mora.engine.frontends.report import previews\n"
            "for read in (previews.video_previews, previews.read_video):\n"
            "    try: read(Path(sys.argv[1]))\n"
            "    except InputError as e: print(e)\n")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / file)], capture_output=True, text=True,
                              timeout=TIME_LIMIT, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "user-cache")})
    except subprocess.TimeoutExpired:
        pytest.fail(f"the preview of a FIFO {file} did not finish in {TIME_LIMIT} s")
    assert done.stdout.splitlines() == [f"{tmp_path / file}: video path is a named pipe (FIFO), not a regular file"] * 2


@pytest.mark.parametrize("file", ["/etc/hostname", "../secret.txt", "sub/../../secret.txt"])
def test_an_output_the_manifest_places_outside_the_run_folder_is_neither_read_nor_linked(tmp_path, file):
    (tmp_path / "secret.txt").write_text("not the run's to show")
    run = run_dir(tmp_path / "run", {"outside": file})
    done = report(run)
    assert done.returncode == 0, done.stderr
    page = (run / "report.html").read_text()
    card = output_card(page, "outside")
    assert "unreadable: outside the run folder" in card and f"{file}</a>" not in page  # not linked either
    assert "not the run's to show" not in page and "a fox at dawn" in output_card(page, "caption")


def test_an_output_linked_out_of_the_run_folder_is_neither_read_nor_linked(tmp_path):
    (tmp_path / "secret.txt").write_text("not the run's to show")
    run = run_dir(tmp_path / "run", {"linked": "out.txt", "through": "up/secret.txt"})
    (run / "out.txt").symlink_to(tmp_path / "secret.txt")
    (run / "up").symlink_to(tmp_path)
    done = report(run)
    assert done.returncode == 0, done.stderr
    page = (run / "report.html").read_text()
    for name, file in (("linked", "out.txt"), ("through", "up/secret.txt")):
        assert "unreadable: outside the run folder" in output_card(page, name) and f"{file}</a>" not in page
    assert "not the run's to show" not in page and "a fox at dawn" in output_card(page, "caption")
