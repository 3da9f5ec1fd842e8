"""A stand-in for the Hugging Face hub, for tests: an HTTP server on 127.0.0.1 serving repositories at one commit.

It answers the endpoints huggingface_hub calls for `model_info`, `snapshot_download` and `hf_hub_download`:
`/api/models/ID[/revision/REV]`, `/api/models/ID/tree/REV` and `/ID/resolve/REV/FILE` with the X-Repo-Commit and
ETag headers, and no Xet; any other path is a 404 with the hub's error code. Every request is recorded.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def folder_files(folder: Path) -> dict[str, bytes]:
    """A saved model folder as a repository's files (hidden files left out)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


class StandInHub(ThreadingHTTPServer):
    """Serves repositories given as {repo: {path: bytes}} at `COMMIT`, for the branch `main` or the commit."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        super().__init__(("127.0.0.1", 0), Handler)
        self.repos = repos
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def serving(repos: dict[str, dict[str, bytes]]) -> Iterator[StandInHub]:
    """A stand-in hub answering on its own thread until the block ends."""
    server = StandInHub(repos)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Handler(BaseHTTPRequestHandler):
    server: StandInHub

    def log_message(self, *args: object) -> None:  # quiet: tests read server.requests instead
        pass

    def do_HEAD(self) -> None:
        self.answer(body=False)

    def do_GET(self) -> None:
        self.answer(body=True)

    def answer(self, body: bool) -> None:
        path = unquote(urlparse(self.path).path)
        self.server.requests.append(f"{self.command} {path}")
        for repo, files in self.server.repos.items():
            if path in (f"/api/models/{repo}", *(f"/api/models/{repo}/revision/{r}" for r in ("main", COMMIT))):
                siblings = [{"rfilename": f, "size": len(data)} for f, data in files.items()]
                info = {"id": repo, "sha": COMMIT, "private": False, "siblings": siblings}
                return self.send(json.dumps(info).encode(), "application/json", body)
            if path.startswith(f"/api/models/{repo}/tree/"):
                tree = [{"type": "file", "path": f, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        for f, data in files.items()]
                return self.send(json.dumps(tree).encode(), "application/json", body)
            for rev in ("main", COMMIT):
                prefix = f"/{repo}/resolve/{rev}/"
                if path.startswith(prefix) and path[len(prefix):] in files:
                    data = files[path[len(prefix):]]
                    return self.send(data, "application/octet-stream", body,
                                     {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'})
        known = any(f"/{repo}/" in path + "/" for repo in self.server.repos)
        self.send_response(404)
        self.send_header("X-Error-Code", "EntryNotFound" if known else "RepoNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send(self, data: bytes, kind: str, body: bool, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        for name, value in {"Content-Type": kind, "Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(data)
