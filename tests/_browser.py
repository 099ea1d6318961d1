"""A tiny headless-Chromium driver over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: JSON messages terminated by NUL on fds 3 and 4), so the
report test needs no websocket or browser-automation package.

:func:`render` loads a file and returns its visible text, console errors, uncaught
exceptions, failed or non-local network requests and, optionally, a PNG screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium() -> str | None:
    for c in CHROMIUM_CANDIDATES:
        if os.access(c, os.X_OK):
            return c
    return shutil.which("chromium")


@dataclass
class Rendered:
    text: str = ""
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    images_ok: bool = False
    n_images: int = 0
    screenshot: bytes | None = None

    @property
    def errors(self) -> list[str]:
        return self.console_errors + self.exceptions + self.log_errors + self.failed_requests

    @property
    def external_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("file://", "data:", "about:"))]


class _Pipe:
    def __init__(self, proc: subprocess.Popen, wfd: int, rfd: int) -> None:
        self.proc, self.wfd, self.rfd = proc, wfd, rfd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self.next_id += 1
        msg: dict = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        return self.next_id

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self.rfd], [], [], left)
            if ready:
                chunk = os.read(self.rfd, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def call(
        self,
        method: str,
        params: dict | None = None,
        session: str | None = None,
        timeout: float = 30,
    ) -> dict:
        mid = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev["method"] == method:
                return ev
        while True:
            msg = self._read(deadline)
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                msg = self._read(deadline)
                if "method" in msg:
                    self.events.append(msg)
        except TimeoutError:
            pass


def render(
    path: Path, chromium: str, screenshot: bool = False, width: int = 1280, timeout: float = 60
) -> Rendered:
    """Load ``path`` in headless Chromium and report what happened (see :class:`Rendered`)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()

    def child_fds() -> None:  # runs in the child: the DevTools pipe is fds 3 (in) and 4 (out)
        # first out of the way (either end may itself be fd 3 or 4), then into place; dup2
        # makes 3 and 4 inheritable while every fd Python opened is closed on exec
        r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.dup2(r, 3)
        os.dup2(w, 4)

    with tempfile.TemporaryDirectory(prefix="varcall-chromium-") as profile:
        args = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            f"--window-size={width},900",
            "about:blank",
        ]
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child_fds,
            close_fds=False,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        pipe = _Pipe(proc, to_child_w, from_child_r)
        out = Rendered()
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)[
                "targetId"
            ]
            sess = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
                "sessionId"
            ]
            for domain in ("Runtime", "Log", "Page", "Network"):
                pipe.call(f"{domain}.enable", session=sess)
            pipe.events.clear()
            pipe.call("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=sess)
            pipe.wait_event("Page.loadEventFired", timeout=timeout)
            pipe.drain(0.5)
            res = pipe.call(
                "Runtime.evaluate",
                {
                    "expression": "document.body ? document.body.innerText : ''",
                    "returnByValue": True,
                },
                session=sess,
            )
            out.text = res.get("result", {}).get("value", "")
            res = pipe.call(
                "Runtime.evaluate",
                {
                    "expression": "[document.images.length, Array.from(document.images)"
                    ".every(i => i.complete && i.naturalWidth > 0)]",
                    "returnByValue": True,
                },
                session=sess,
            )
            out.n_images, out.images_ok = res["result"]["value"]
            if screenshot:
                m = pipe.call("Page.getLayoutMetrics", session=sess)
                h = int(m["cssContentSize"]["height"])
                shot = pipe.call(
                    "Page.captureScreenshot",
                    {
                        "format": "png",
                        "captureBeyondViewport": True,
                        "clip": {"x": 0, "y": 0, "width": width, "height": h, "scale": 1},
                    },
                    session=sess,
                )
                out.screenshot = base64.b64decode(shot["data"])
            for ev in pipe.events:
                p = ev.get("params", {})
                if ev["method"] == "Runtime.consoleAPICalled" and p.get("type") in (
                    "error",
                    "assert",
                ):
                    out.console_errors.append(
                        " ".join(
                            str(a.get("value", a.get("description", ""))) for a in p.get("args", [])
                        )
                    )
                elif ev["method"] == "Runtime.exceptionThrown":
                    out.exceptions.append(p.get("exceptionDetails", {}).get("text", "exception"))
                elif (
                    ev["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error"
                ):
                    out.log_errors.append(p["entry"].get("text", ""))
                elif ev["method"] == "Network.requestWillBeSent":
                    out.requests.append(p.get("request", {}).get("url", ""))
                elif ev["method"] == "Network.loadingFailed":
                    out.failed_requests.append(p.get("errorText", "failed"))
            try:
                pipe.call("Browser.close", timeout=10)
            except (RuntimeError, TimeoutError):
                pass
        finally:
            os.close(to_child_w)
            os.close(from_child_r)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return out
