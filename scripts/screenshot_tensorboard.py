"""Start a real TensorBoard server on loopback and screenshot its dashboards with headless Chromium.

Usage::

    python scripts/screenshot_tensorboard.py --logdir spinal_runs/demo --out docs/img

Needs Debian's ``chromium`` package (``apt-get install chromium``). The server listens on 127.0.0.1
only and is stopped when the script ends. Chromium is driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``; nothing listens on a port), so that a page's checkboxes can be set the
way a person would before the screenshot. Each screenshot is one dashboard page:

- ``tensorboard_custom_scalars.png`` — the Custom Scalars dashboard: one chart per metric with one line per
  layer (each layer is its own run, so its own colour), then the change-since-first-probe charts;
- ``tensorboard_layer_scalars.png`` — the Scalars dashboard filtered to two per-layer change charts;
- ``tensorboard_band_scalars.png`` — the late band's transport next to the alert and rollback markers
  (smoothing 0, "Ignore outliers in chart scaling" off: a marker is a single 0 → 1 spike);
- ``tensorboard_heatmaps.png`` — two heatmap images (value | change since the first probe) at actual size;
- ``tensorboard_config.png`` — the ``spinal/config`` text.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

#: file → (URL fragment, window height, {checkbox label: wanted state}).
PAGES: dict[str, tuple[str, int, dict[str, bool]]] = {
    "tensorboard_custom_scalars.png": ("#custom_scalars&_smoothingWeight=0", 1100, {}),
    "tensorboard_layer_scalars.png": (
        "#scalars&_smoothingWeight=0&tagFilter=spinal_by_layer%2F(transport|entropy)_change%24",
        900,
        {},
    ),
    "tensorboard_band_scalars.png": (
        "#scalars&_smoothingWeight=0&tagFilter=spinal%2F(band%2Flate%2Ftransport|alerts%2Fmarker|rollbacks%2Fmarker)%24",
        900,
        {"Ignore outliers in chart scaling": False},
    ),
    "tensorboard_heatmaps.png": (
        "#images&tagFilter=spinal%2Fheatmap%2F(transport|entropy)%24",
        1250,
        {"Show actual image size": True},
    ),
    "tensorboard_config.png": ("#text&tagFilter=spinal%2Fconfig", 900, {}),
}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
#: Sets the checkboxes named in ``WANTED`` (searched through every shadow root) by clicking them.
SET_CHECKBOXES = """
(() => {
  const wanted = WANTED, done = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) walk(el.shadowRoot);
      const tag = el.tagName.toLowerCase();
      if (tag !== 'paper-checkbox' && tag !== 'mat-checkbox') continue;
      const label = (el.innerText || el.textContent || '').trim();
      if (!(label in wanted)) continue;
      const checked = el.checked ?? el.classList.contains('mat-mdc-checkbox-checked');
      if (checked !== wanted[label]) el.click();
      done.push(label);
    }
  };
  walk(document);
  return done;
})()
"""


class DevTools:
    """A minimal DevTools-protocol client over Chromium's ``--remote-debugging-pipe`` (fds 3 and 4)."""

    def __init__(self, chromium: str, width: int, height: int, profile: str) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire() -> None:  # in the child: its fd 3 reads our commands, its fd 4 takes the replies
            read_end, write_end = os.dup(to_chrome_r), os.dup(from_chrome_w)  # the pipes may be fds 3, 4
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [
                chromium,
                *CHROMIUM_FLAGS,
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            preexec_fn=wire,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._id = 0
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=True,
        )

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: bool = False, timeout: float = 120.0
    ) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return dict(reply.get("result", {}))
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raise TimeoutError(f"{method}: no answer within {timeout:.0f} s")

    def screenshot(self, url: str, target: Path, settle: float, checkboxes: dict[str, bool]) -> None:
        self.call("Page.navigate", {"url": url}, session=True)
        time.sleep(settle)
        if checkboxes:
            script = SET_CHECKBOXES.replace("WANTED", json.dumps(checkboxes))
            found = self.call("Runtime.evaluate", {"expression": script, "returnByValue": True}, session=True)
            missing = set(checkboxes) - set(found.get("result", {}).get("value") or [])
            if missing:
                print(f"  (checkbox not found on this page: {sorted(missing)})", file=sys.stderr)
            time.sleep(settle / 2)
        shot = self.call("Page.captureScreenshot", {"format": "png"}, session=True)
        target.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"TensorBoard did not answer at {url} within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", required=True, help="TensorBoard log directory (e.g. a demo run's output)")
    parser.add_argument("--out", default="docs/img", help="where to write the PNG files")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--only", nargs="*", default=None, help="screenshot only these files (names from PAGES)")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds the page gets to render charts")
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        print(f"Chromium not found at {args.chromium}: apt-get install chromium", file=sys.stderr)
        return 2
    if not Path(args.logdir).is_dir():
        print(f"--logdir {args.logdir} is not a directory", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            args.logdir,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--reload_interval",
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(base, timeout=90)
        time.sleep(3)  # first load of the event files
        for name, (fragment, height, checkboxes) in PAGES.items():
            if args.only is not None and name not in args.only:
                continue
            # Chromium's helper processes may still write to the profile as it is removed: not an error here
            with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
                browser = DevTools(args.chromium, args.width, height, profile)
                try:
                    target = out / name
                    browser.screenshot(base + fragment, target, args.settle, checkboxes)
                finally:
                    browser.close()
                print(f"wrote {target} ({target.stat().st_size} bytes) from {base + fragment}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
