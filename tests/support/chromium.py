"""Open a page in headless Chromium and read back what a reader would see: which images decoded, what the console
logged, which URLs the page requested.

Chromium is driven through its DevTools protocol over ``--remote-debugging-pipe`` (the transport Playwright uses:
NUL-separated JSON messages, commands on the child's fd 3, replies and events on its fd 4), so there is no port to
discover and nothing beyond the standard library. Tests take the ``chromium_path`` fixture (it installs Debian's
``chromium`` with apt-get when it is missing, or skips where it cannot), then ``load_page(path)``, or ``Browser()``
to load several pages in one Chromium.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import apt

PACKAGE = "chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe"]
# Every image's decoded width (0 when it failed), once each has finished decoding or failed to.
DECODED_WIDTHS = ("Promise.all([...document.images].map("
                  "image => image.decode().then(() => image.naturalWidth, () => 0)))")


def chromium() -> str | None:
    return apt.which("chromium")


def chromium_available() -> str | None:
    """None if Chromium is here or apt-get can install it, else a one-line skip reason."""
    return None if chromium() else apt.cannot_install([PACKAGE])


def install_chromium() -> str:
    """The path of Chromium, installed with apt-get first when it is missing."""
    apt.install([PACKAGE], lambda: chromium() is not None)
    return str(chromium())


def chromium_for_tests() -> str:
    """Chromium's path for tests that open pages (the `chromium_path` fixture of conftest.py); installs Chromium
    when it is missing, skips where it cannot."""
    reason = chromium_available()
    if reason:
        pytest.skip(reason)
    return install_chromium()


@dataclass
class PageLoad:
    """What loading one page showed."""
    image_widths: list[int]                                  # naturalWidth of each <img>, 0 when it did not decode
    console_errors: list[str] = field(default_factory=list)  # console.error, uncaught exceptions, browser errors
    requests: list[str] = field(default_factory=list)        # every URL the page asked for, itself included


def _pipe_above_4() -> tuple[int, int]:
    """A pipe whose ends are numbered above 4, so that redirecting them onto the child's fds 3 and 4 clobbers
    neither of them."""
    low = os.pipe()
    high = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in low)
    for fd in low:
        os.close(fd)
    return high


class Browser:
    """One headless Chromium process with a fresh profile, and its DevTools connection."""

    def __init__(self, timeout: float = 60) -> None:
        self.timeout = timeout
        self.events: list[dict] = []
        self._next_id = 0
        self._buffer = b""
        self._profile = tempfile.TemporaryDirectory(prefix="harness-chromium-")
        self._log = open(Path(self._profile.name) / "stderr.log", "wb+")
        commands_read, self._commands = _pipe_above_4()
        self._replies, replies_write = _pipe_above_4()
        # bash (dash takes single-digit fds only) puts the pipe ends where --remote-debugging-pipe expects them,
        # then becomes Chromium.
        script = f'exec "$@" 3<&{commands_read} 4>&{replies_write} {commands_read}<&- {replies_write}>&-'
        profile = Path(self._profile.name) / "profile"
        self.process = subprocess.Popen(
            ["bash", "-c", script, "bash", install_chromium(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(commands_read, replies_write), stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        os.close(commands_read)   # the child's copies are the only ones left: its exit closes the pipe
        os.close(replies_write)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one DevTools command and return its result; events that arrive meanwhile go to self.events."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, event: str, session: str) -> dict:
        """The first event of this name from this session, waiting for it if it has not come yet."""
        deadline = time.monotonic() + self.timeout
        seen = 0
        while True:
            for message in self.events[seen:]:
                if message.get("method") == event and message.get("sessionId") == session:
                    return message["params"]
            seen = len(self.events)
            self.events.append(self._read(deadline))

    def load(self, page: Path) -> PageLoad:
        """Open `page` in a new tab, wait for its load event and for every image to decode."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call("Page.navigate", {"url": page.resolve().as_uri()}, session)
        self.wait_for("Page.loadEventFired", session)
        widths = self.call("Runtime.evaluate", {"expression": DECODED_WIDTHS, "awaitPromise": True,
                                                "returnByValue": True}, session)["result"]["value"]
        mine = [event for event in self.events if event.get("sessionId") == session]
        return PageLoad(widths, [error for event in mine if (error := _console_error(event))],
                        [event["params"]["request"]["url"] for event in mine
                         if event["method"] == "Network.requestWillBeSent"])

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass                      # it may close its pipe before it answers
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._commands)
            os.close(self._replies)
            self._log.close()
            self._profile.cleanup()

    def _read(self, deadline: float) -> dict:
        """The next message from Chromium."""
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer within {self.timeout:g} s{self._stderr()}")
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium closed its DevTools pipe (exit code {self.process.poll()})"
                                   f"{self._stderr()}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _stderr(self) -> str:
        self._log.seek(0)
        return ":\n" + self._log.read()[-3000:].decode(errors="replace")


def _console_error(event: dict) -> str | None:
    """The text of a console error, an uncaught exception or an error the browser logged (a resource that failed to
    load, a blocked request), else None."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        return " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"])
    if method == "Runtime.exceptionThrown":
        return params["exceptionDetails"].get("text", "exception")
    if method == "Log.entryAdded" and params["entry"]["level"] == "error":
        return f"{params['entry']['text']} ({params['entry'].get('url', '')})"
    return None


def load_page(page: Path, timeout: float = 60) -> PageLoad:
    """Open one page in a fresh headless Chromium."""
    with Browser(timeout) as browser:
        return browser.load(page)
