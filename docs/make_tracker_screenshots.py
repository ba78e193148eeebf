"""Screenshots of a zoo run in TensorBoard and in the MLflow UI, for docs/guide.md.

    .venv/bin/python docs/make_tracker_screenshots.py [--work /tmp/zoo-shots]

Trains a small GAN run with ``--log tensorboard,mlflow``, serves each tool's own UI on
localhost and photographs it with headless Chromium: docs/images/tensorboard.png and
docs/images/mlflow-run.png.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import click

DOCS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], url: str, log: Path) -> Iterator[None]:
    """A local UI server, up until the block ends."""
    with log.open("w") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        try:
            for _ in range(120):
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(url, timeout=2).close()
                    break
                time.sleep(0.5)
            else:
                raise SystemExit(f"{command[0]} did not come up; see {log}")
            yield
        finally:
            server.terminate()
            server.wait(timeout=30)


def photograph(url: str, path: Path, profile: Path, size: str = "1400,1000") -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
               "--virtual-time-budget=20000", f"--window-size={size}",
               f"--screenshot={path}", url]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=180)
    print(f"wrote {path}")


@click.command()
@click.option("--work", default="/tmp/zoo-shots", show_default=True, type=click.Path())
def main(work: str) -> None:
    from mlflow.tracking import MlflowClient

    import zoo

    folder = Path(work)
    shutil.rmtree(folder, ignore_errors=True)
    result = zoo.run("gan", epochs=3, train_size=6400, test_size=1000, out=str(folder / "runs"),
                     log=["tensorboard", "mlflow"], progress=False)  # fmt: skip
    store = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("gan")
    (run,) = client.search_runs([experiment.experiment_id])
    port = free_port()
    with serving([str(BIN / "tensorboard"), "--logdir", str(folder / "runs"), "--port",
                  str(port), "--host", "127.0.0.1"], f"http://127.0.0.1:{port}/",
                 folder / "tensorboard.log"):  # fmt: skip
        photograph(f"http://127.0.0.1:{port}/#timeseries", DOCS / "images" / "tensorboard.png",
                   folder / "profile-tb")  # fmt: skip
    port = free_port()
    with serving([str(BIN / "mlflow"), "ui", "--backend-store-uri", store, "--port", str(port),
                  "--host", "127.0.0.1"], f"http://127.0.0.1:{port}/",
                 folder / "mlflow.log"):  # fmt: skip
        page = f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
        photograph(page, DOCS / "images" / "mlflow-run.png", folder / "profile-mlflow")
    print(f"from {result.path}")


if __name__ == "__main__":
    main()
