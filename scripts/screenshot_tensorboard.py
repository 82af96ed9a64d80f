"""Start a real TensorBoard server on loopback and screenshot its dashboards with headless Chromium.

Usage::

    python scripts/screenshot_tensorboard.py --logdir spinal_runs/demo --out docs/img

Needs Debian's ``chromium`` package (``apt-get install chromium``). The server listens on 127.0.0.1
only and is stopped when the script ends. Each screenshot is one dashboard page:
custom scalars (the per-metric multi-line charts and band margin charts), the scalars page filtered
to the late band, and the heatmap images.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PAGES = {
    "tensorboard_custom_scalars.png": "#custom_scalars",
    "tensorboard_band_scalars.png": "#scalars&tagFilter=spinal%2Fband%2Flate%2F(contraction|transport|entropy)%24",
    "tensorboard_heatmaps.png": "#images",
}
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]


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
    parser.add_argument("--height", type=int, default=1100)
    parser.add_argument("--settle", type=float, default=12.0, help="seconds the page gets to render charts")
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
        [sys.executable, "-m", "tensorboard.main", "--logdir", args.logdir, "--host", "127.0.0.1",
         "--port", str(port), "--reload_interval", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(base, timeout=90)
        time.sleep(3)  # first load of the event files
        for name, fragment in PAGES.items():
            with tempfile.TemporaryDirectory() as profile:
                target = out / name
                subprocess.run(
                    [args.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                     f"--window-size={args.width},{args.height}",
                     f"--virtual-time-budget={int(args.settle * 1000)}",
                     f"--screenshot={os.path.abspath(target)}", base + fragment],
                    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180,
                )
                print(f"wrote {target} ({target.stat().st_size} bytes) from {base + fragment}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
