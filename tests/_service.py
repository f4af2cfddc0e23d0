"""A real uvicorn server on a free loopback port, in a thread, and a urllib client for it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request

import uvicorn

from crm.config import CAMPAIGNS_DIR, Paths
from crm.service import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(paths: Paths, app=None, **kwargs):
    """Yield the base URL of the API on ``paths`` (or of ``app``) served by uvicorn until the block ends."""
    app = app if app is not None else create_app(paths, **kwargs)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def call(url: str, method: str = "GET", body: bytes | object | None = None, key: str | None = None,
         headers: dict | None = None) -> tuple[int, object]:
    """(status, parsed JSON body or text) of one request."""
    data = body if isinstance(body, bytes | type(None)) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key is not None:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


@contextlib.contextmanager
def own_campaigns(home):
    """A copy of the shipped campaign folder under ``home``, as ``$CRM_CAMPAIGNS_DIR`` until the block
    ends (a module-scoped fixture cannot use monkeypatch); yields the folder."""
    campaigns = home / "campaigns"
    shutil.copytree(CAMPAIGNS_DIR, campaigns)
    old = os.environ.get("CRM_CAMPAIGNS_DIR")
    os.environ["CRM_CAMPAIGNS_DIR"] = str(campaigns)
    try:
        yield campaigns
    finally:
        if old is None:
            os.environ.pop("CRM_CAMPAIGNS_DIR", None)
        else:
            os.environ["CRM_CAMPAIGNS_DIR"] = old
