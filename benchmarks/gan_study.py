"""The ten GANs at the paper's budget, side by side on one device (issue 18, item 3).

    python benchmarks/gan_study.py study --device cuda --epochs 50 --jobs 10
    .venv/bin/python benchmarks/gan_study.py study --device cpu --epochs 2 --max-steps 10 \\
        --jobs 2 --fd-images 200 --out /tmp/study --name gan_study_dryrun   # a dry run

``study`` starts one ``worker`` process per variant, at most ``--jobs`` at once (on one
GPU the ten share it: each step is launch-bound, so they overlap), each training with
the reference settings (batch 64, Adam 2e-4, beta1 0.5) in its own run folder
OUT/<variant>/, resumed there if the study is started again. A worker also measures
the Fréchet distance after every epoch on ``--fd-images`` test images (the pinned
evaluator), so the table says which variants keep improving after epoch 1, and which
collapse or oscillate. Each run ends with zoo's own final evaluation (FD, KID,
precision/recall, conditional accuracy, on all 10,000 test images). The study then
copies the epoch 1, middle and last grids and the loss curves to
benchmarks/results/NAME/, draws every variant's FD by epoch (NAME/fd_by_epoch.png),
writes benchmarks/results/NAME.json and prints the table.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, budget_reached, markdown_table, write_result

import zoo
from zoo.core.runs import read_jsonl

VARIANTS = ("gan", "cgan", "infogan", "acgan", "ebgan", "began", "wgan", "wgan_gp", "dragan",
            "lsgan")  # fmt: skip
FD_FILE = "epoch_fd.jsonl"  # the worker's per-epoch FD, in the run folder
STOPPED = 3  # a worker's exit code: it stopped at the deadline, checkpointed and evaluated


class EpochFrechet(zoo.RunObserver):
    """FD on a few test images after every epoch, appended to RUN/epoch_fd.jsonl; stops
    the run (StopRun, after the epoch's checkpoint) when the next epoch would end after
    ``stop_at`` (a time.time()), judged by how long the last one took."""

    def __init__(self, images: int, stop_at: float | None = None) -> None:
        self.images, self.stop_at = images, stop_at
        self.path: Path | None = None
        self.epoch_started = time.time()

    def run_started(self, start) -> None:
        self.path = start.path / FD_FILE
        self.epoch_started = time.time()

    def epoch_ended(self, epoch, record) -> None:
        from zoo.sweeps.trial import epoch_value

        value = epoch_value(epoch, record, "frechet_distance", self.images)
        with self.path.open("a") as file:
            file.write(json.dumps({"epoch": epoch.epoch, "frechet_distance": value}) + "\n")
        now, took = time.time(), time.time() - self.epoch_started
        self.epoch_started = now
        if self.stop_at is not None and now + took > self.stop_at:
            raise zoo.StopRun(f"the study's deadline: stopped after epoch {epoch.epoch}")


@click.group()
def cli() -> None:
    """A study of the ten GAN variants (study) and one variant's training (worker)."""


@cli.command()
@click.argument("variant", type=click.Choice(VARIANTS))
@click.option("--out", required=True)
@click.option("--epochs", type=int, required=True)
@click.option("--max-steps", type=int)
@click.option("--device", default="cuda")
@click.option("--fd-images", type=int, default=1000)
@click.option("--train-size", type=int)
@click.option("--test-size", type=int)
@click.option("--stop-at", type=float, help="A time.time(): no epoch starts that would end later.")
@click.option("--compile-mode", help="Compile the networks in this torch.compile mode.")
def worker(variant: str, out: str, epochs: int, max_steps: int | None, device: str,
           fd_images: int, train_size: int | None, test_size: int | None,
           stop_at: float | None, compile_mode: str | None) -> None:  # fmt: skip
    """Train one variant in OUT/<variant>/ (resuming its newest run there), then make
    sure the run is evaluated, also when the deadline stopped it."""
    if compile_mode and zoo.get_plugin(variant).cannot_compile:  # wgan_gp, dragan: eager
        compile_mode = None
    run = newest_run(Path(out) / variant, variant)
    if run is not None and budget_reached(zoo.RunResult(run, {}).history, epochs, max_steps):
        _evaluate(run, device, test_size)
        print(json.dumps({"variant": variant, "run": str(run), "earlier": True}))
        return
    values = {"epochs": epochs, "max_steps": max_steps, "device": device,
              "out": str(Path(out) / variant), "progress": False,
              "resume": str(run) if run else None, "train_size": train_size,
              "test_size": test_size, "compile": bool(compile_mode) or None,
              "compile_mode": compile_mode}  # fmt: skip
    frechet = EpochFrechet(fd_images, stop_at)
    try:
        result = zoo.run(variant, observers=[frechet],
                         **{k: v for k, v in values.items() if v is not None})  # fmt: skip
    except zoo.StopRun as stop:
        run = frechet.path.parent  # the run it stopped
        _evaluate(run, device, test_size)
        print(
            json.dumps(
                {"variant": variant, "run": str(run), "stopped": str(stop), **_compile_counts()}
            )
        )
        sys.exit(STOPPED)
    print(json.dumps({"variant": variant, "run": str(result.path), **_compile_counts()}))


def _compile_counts() -> dict:
    """What torch.compile did in this process: graphs, breaks, skipped CUDA graphs."""
    from torch._dynamo.utils import counters

    return {"unique_graphs": counters["stats"]["unique_graphs"],
            "graph_breaks": sum(counters["graph_break"].values()),
            "cudagraph_skips": counters["inductor"]["cudagraph_skips"]}  # fmt: skip


def newest_run(folder: Path, variant: str) -> Path | None:
    """The newest run of ``variant`` in ``folder`` with a checkpoint that did not fail."""
    runs = sorted(p.parent for p in folder.glob(f"{variant}-*/state.safetensors")
                  if not (p.parent / "failed.json").exists())  # fmt: skip
    return runs[-1] if runs else None


def _evaluate(run: Path, device: str, test_size: int | None) -> None:
    """zoo's final evaluation, where training did not get to it (a stop, a crash)."""
    if not (run / "eval.json").exists():
        zoo.evaluate(run, device=device, test_size=test_size)


@cli.command()
@click.option("--variants", default=",".join(VARIANTS), show_default=True)
@click.option("--epochs", default=50, show_default=True)
@click.option("--max-steps", type=int, help="A dry run: stop each variant after N steps.")
@click.option("--device", default="cuda", show_default=True)
@click.option("--jobs", default=10, show_default=True, help="Variants training at once.")
@click.option("--fd-images", default=1000, show_default=True, help="Per-epoch FD images.")
@click.option("--train-size", type=int, help="Fewer training images (a dry run).")
@click.option("--test-size", type=int, help="Fewer test images for the final evaluation.")
@click.option("--out", default="runs/benchmarks/gan_study", show_default=True)
@click.option("--name", default="gan_study", show_default=True, help="Result file name.")
@click.option("--deadline", type=float, help="Seconds from now by which training stops: "
              "at an epoch's end (checkpointed; the same command resumes).")  # fmt: skip
@click.option("--grace", default=120.0, show_default=True,
              help="Seconds after the deadline for the final evaluations, then kill.")  # fmt: skip
@click.option("--compile-mode", help="Compile every variant's networks in this mode "
              "(reduce-overhead: CUDA graphs).")  # fmt: skip
def study(variants: str, epochs: int, max_steps: int | None, device: str, jobs: int,
          fd_images: int, train_size: int | None, test_size: int | None, out: str,
          name: str, deadline: float | None, grace: float,
          compile_mode: str | None) -> None:  # fmt: skip
    """Train the variants concurrently, then gather their numbers, grids and curves."""
    names = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise click.BadParameter(f"unknown variant {unknown[0]}")
    Path(out).mkdir(parents=True, exist_ok=True)
    started = time.time()
    stop_at = started + deadline if deadline else None
    command = [sys.executable, __file__, "worker", "--out", out, "--epochs", str(epochs),
               "--device", device, "--fd-images", str(fd_images)]  # fmt: skip
    command += ["--stop-at", str(stop_at)] if stop_at else []
    for flag, value in (("--max-steps", max_steps), ("--train-size", train_size),
                        ("--test-size", test_size), ("--compile-mode", compile_mode)):  # fmt: skip
        command += [flag, str(value)] if value else []
    kill_at = stop_at + grace if stop_at else float("inf")
    ends = _train_all(names, command, Path(out), jobs, kill_at)
    wall = time.time() - started
    rows = [_gather(v, out, name, ends[v]) for v in names]
    rows = [row for row in rows if row]
    write_result(name, {"command": " ".join(sys.argv), "wall_s": round(wall, 1),
                        "ends": ends, "rows": rows})  # fmt: skip
    if any(r["epoch_fd"] for r in rows):
        _fd_curves(rows, RESULTS / name / "fd_by_epoch.png")
    print(_table(rows))
    print(f"wall time {wall:.0f} s for {len(names)} variants; ends: {ends}")


def _train_all(names, command, out: Path, jobs: int, kill_at: float) -> dict[str, str]:
    """One worker per variant, at most ``jobs`` at a time, logging to OUT/<variant>.log.
    Returns each variant's end: done, stopped (the deadline), failed, killed (still
    running at ``kill_at``: SIGINT, then SIGKILL 15 s later) or not started."""
    pending, running, ends = list(names), {}, dict.fromkeys(names, "not started")
    threads = str(max(1, (os.cpu_count() or 1) // min(jobs, len(names))))
    environment = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
    while pending or running:
        while pending and len(running) < jobs and time.time() < kill_at:
            variant = pending.pop(0)
            log = (out / f"{variant}.log").open("a")
            process = subprocess.Popen([*command[:3], variant, *command[3:]], stdout=log,
                                       stderr=log, env=environment)  # fmt: skip
            running[variant] = (process, log)
        if time.time() >= kill_at:
            pending.clear()
            _stop(running, ends)
        for variant, (process, log) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            del running[variant]
            if ends[variant] != "killed":
                codes = {0: "done", STOPPED: "stopped"}
                ends[variant] = codes.get(process.returncode, "failed")
            print(f"{variant}: {ends[variant]} (exit {process.returncode})", file=sys.stderr,
                  flush=True)  # fmt: skip
        time.sleep(1)
    return ends


def _stop(running: dict, ends: dict[str, str]) -> None:
    """Ctrl-C the workers still running (each checkpoints), SIGKILL those that linger."""
    for variant, (process, _) in running.items():
        if process.poll() is None and ends[variant] != "killed":
            ends[variant] = "killed"
            process.send_signal(signal.SIGINT)
    waited = time.time() + 15
    while time.time() < waited and any(p.poll() is None for p, _ in running.values()):
        time.sleep(0.5)
    for process, _ in running.values():
        if process.poll() is None:
            process.kill()


def _gather(variant: str, out: str, name: str, end: str) -> dict:
    """A variant's numbers, per-epoch FD, grids (epochs 1, E/2 and E: 1, 25 and 50 at the
    reference budget) and loss curve, copied to benchmarks/results/NAME/; {} if it has
    no run, and what could be read if its folder is damaged."""
    runs = sorted((Path(out) / variant).glob(f"{variant}-*"))
    if not runs:
        return {}
    run, row = runs[-1], {"variant": variant, "run": str(runs[-1]), "end": end}
    try:
        results = _read_json(run / "eval.json")
        history = zoo.RunResult(run, {}).history
        # none when a dry run stops inside its first epoch; the last of a redone epoch
        by_epoch = {e["epoch"]: e for e in read_jsonl(run / FD_FILE)}
        _copy_pictures(run, variant, RESULTS / name)
    except (OSError, ValueError, zoo.ZooError) as error:
        return {**row, "epochs": 0, "epoch_fd": [], "error": str(error)}
    return {**row, "epochs": len(history), "steps": history[-1]["step"] if history else 0,
            "seconds": round(sum(r["seconds"] for r in history), 1),
            "epoch_fd": [by_epoch[epoch] for epoch in sorted(by_epoch)],
            **{k: results.get(k) for k in METRICS}}  # fmt: skip


def _copy_pictures(run: Path, variant: str, pictures: Path) -> None:
    """The first, middle and last epoch grids and the loss curve (drawn here from
    losses.jsonl when training stopped before drawing it)."""
    from zoo.reports.plots import plot_losses

    pictures.mkdir(parents=True, exist_ok=True)
    grids = sorted((run / "samples").glob("epoch_*.png"))
    for grid in {grids[0], grids[max(len(grids) // 2 - 1, 0)], grids[-1]} if grids else ():
        shutil.copyfile(grid, pictures / f"{variant}_{grid.name}")
    if (run / "loss.png").exists():
        shutil.copyfile(run / "loss.png", pictures / f"{variant}_loss.png")
    else:  # nothing is drawn without records
        plot_losses(read_jsonl(run / "losses.jsonl"), pictures / f"{variant}_loss.png", variant)


def _fd_curves(rows: list[dict], path: Path) -> None:
    """Every variant's per-epoch FD on one log-scale plot: who improves, collapses, oscillates."""
    from zoo.reports.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for row in rows:
        points = [(e["epoch"], e["frechet_distance"]) for e in row["epoch_fd"]
                  if e["frechet_distance"] is not None]  # fmt: skip
        if points:
            ax.plot(*zip(*points, strict=True), marker=".", label=row["variant"])
    ax.set(xlabel="epoch", ylabel="Fréchet distance (pinned evaluator)", yscale="log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(ncol=2)
    save_figure(fig, path)
    plt.close(fig)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


METRICS = ("frechet_distance", "kid", "precision", "recall", "conditional_accuracy")


def _table(rows: list[dict]) -> str:
    def cell(value) -> str:
        return f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value)

    def fd_by_epoch(row: dict) -> str:
        return " ".join(f"{e['frechet_distance']:.2f}" for e in row["epoch_fd"]
                        if e["frechet_distance"] is not None)  # fmt: skip

    header = ["variant", "end", "epochs", "FD", "KID", "precision", "recall", "cond. acc",
              "FD by epoch"]  # fmt: skip
    cells = [[r["variant"], r["end"], r["epochs"], *(cell(r.get(k)) for k in METRICS),
              fd_by_epoch(r)] for r in rows]  # fmt: skip
    return markdown_table(header, cells)


if __name__ == "__main__":
    cli()
