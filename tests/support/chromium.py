"""Headless Chromium driven over the DevTools protocol on a pipe (standard library only).

    with Browser(tmp_path) as browser:
        browser.open(url)
        rows = browser.wait_for("document.querySelectorAll('tr').length >= 3", timeout=10)

Chromium's ``--remote-debugging-pipe`` reads commands on its fd 3 and writes answers on its
fd 4, each a JSON object ended by a NUL byte: no WebSocket client is needed. Expressions are
evaluated in the page, so a test reads the DOM as rendered, scripts included.
"""

import base64
import json
import os
import select
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Optional

from tests.support import kill_if_running, require_tool, wait_until

# No network beyond the page: no updates, sync, field trials or QUIC probes.
QUIET_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-default-apps", "--mute-audio")


class BrowserError(RuntimeError):
    """Chromium answered a command with an error, or an expression threw."""


class Browser:
    """One headless Chromium with one page; ``evaluate`` runs JavaScript in it."""

    def __init__(self, directory: Path, width: int = 1400, height: int = 900) -> None:
        binary = require_tool("chromium")
        profile = Path(directory) / "chromium-profile"
        profile.mkdir()
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # A small Python exec wrapper puts the pipe ends on fds 3 and 4, where Chromium
        # looks for them (copied above 10 first, so neither clobbers the other).
        wrapper = ("import fcntl, os, sys\n"
                   "ends = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]\n"
                   "os.dup2(ends[0], 3)\n"
                   "os.dup2(ends[1], 4)\n"
                   "os.execv(sys.argv[3], sys.argv[3:])\n")
        self.stderr_path = Path(directory) / "chromium.stderr"
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", wrapper, str(to_browser_r), str(from_browser_w), binary,
                 *QUIET_FLAGS, "--remote-debugging-pipe",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}",
                 "about:blank"],
                pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=stderr)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._buffer = b""
        self._lock = threading.Lock()
        self.session: Optional[str] = None
        try:
            target = self.command("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.command("Target.attachToTarget",
                                        {"targetId": target, "flatten": True})["sessionId"]
        except BaseException:
            self.close()
            raise

    def _read_message(self, timeout: float) -> Dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], timeout)
            if not ready:
                raise TimeoutError(f"chromium said nothing for {timeout} s;"
                                   f" stderr: {self.stderr_path.read_text(errors='replace')}")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise BrowserError("chromium closed its DevTools pipe; stderr: "
                                   + self.stderr_path.read_text(errors="replace"))
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def command(self, method: str, params: Optional[Dict[str, Any]] = None,
                timeout: float = 30.0) -> Dict[str, Any]:
        """Send one command (to the page once attached) and return its result."""
        with self._lock:
            self._next_id += 1
            message: Dict[str, Any] = {"id": self._next_id, "method": method,
                                       "params": params or {}}
            if self.session is not None:
                message["sessionId"] = self.session
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
            while True:
                answer = self._read_message(timeout)
                if answer.get("id") == self._next_id:     # events are not needed
                    break
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able values only)."""
        result = self.command("Runtime.evaluate", {"expression": expression,
                                                   "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, timeout: float = 30.0) -> None:
        """Navigate and wait until the document has loaded."""
        self.command("Page.navigate", {"url": url})
        wait_until(lambda: self.evaluate(f"document.readyState === 'complete'"
                                         f" && location.href === {json.dumps(url)}"),
                   timeout, interval=0.1, message=f"{url} loaded")

    def wait_for(self, expression: str, timeout: float) -> Any:
        """Poll an expression in the page until it is truthy; its value."""
        return wait_until(lambda: self.evaluate(expression), timeout, interval=0.1,
                          message=expression)

    def screenshot(self, path: Path) -> None:
        data = self.command("Page.captureScreenshot", {"format": "png"})["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.session = None
                self.command("Browser.close", timeout=5)
            except (OSError, BrowserError, TimeoutError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                kill_if_running(self.proc)
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
