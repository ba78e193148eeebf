"""Run settings the trainer owns, shared by every plugin (epochs, batch size, device...).

They sit in the same flat namespace as a plugin's hyperparameters on the command line
and in TOML files, so a plugin's Config may not reuse these names.
"""

from __future__ import annotations

import attrs

from zoo.core.config import option

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "auto")
NONFINITE_POLICIES = ("stop", "skip")
TRACKERS = ("tensorboard", "mlflow")  # zoo.engine.tracking, each an optional extra
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = frozenset({"reduce-overhead", "max-autotune"})  # they replay CUDA graphs


@attrs.frozen
class RunSettings:
    """How a run trains (epochs, batch size, device, precision...), shared by every
    plugin; a plugin's ``defaults`` override the values here."""

    epochs: int = option(1, help="Total number of epochs.", min=1, max=1_000_000)
    max_steps: int | None = option(
        None, help="Stop after this many optimizer steps in total (for quick runs).", min=1
    )
    batch_size: int = option(64, help="Training batch size.", min=1)
    device: str = option("auto", help="cpu, cuda, or auto (cuda when available).", choices=DEVICES)
    precision: str = option(
        "auto",
        help="Autocast precision: fp32, bf16, or auto (bf16 where the hardware has it).",
        choices=PRECISIONS,
    )
    fp32_modules: tuple[str, ...] = option(
        (),
        help="Under bf16, run these of the plugin's networks, or layers of them, in fp32 "
        "(names as in its checkpoint: generator, discriminator.fc.3): mixed precision.",
    )
    channels_last: bool = option(
        False, help="Channels-last memory layout for conv networks (faster on some CPUs/GPUs)."
    )
    compile: bool = option(
        False, help="torch.compile the networks (slow first steps, then faster on some hardware)."
    )
    compile_mode: str = option(
        "default",
        help="torch.compile's mode, with --compile: reduce-overhead replays each network as a "
        "CUDA graph on CUDA (one launch instead of dozens: small networks are launch-bound "
        "there); max-autotune also tunes kernels (minutes of compiling).",
        choices=COMPILE_MODES,
    )
    threads: int | None = option(
        None,
        help="CPU threads for torch (default: torch's choice, one per core).",
        min=1,
        max=4096,
    )
    seed: int = option(0, help="Seed for weights, shuffling and dropout.", min=0, max=2**63 - 1)
    out: str = option("runs", help="Folder in which the run folder is created.")
    data_dir: str | None = option(
        None, help="Folder with the Fashion-MNIST IDX files (else ZOO_DATA_DIR, caches)."
    )
    train_size: int | None = option(
        None, help="Use only the first N training images (quick experiments, tests).", min=1
    )
    test_size: int | None = option(None, help="Evaluate on only the first N test images.", min=1)
    eval_batch_size: int = option(1000, help="Batch size for evaluation.", min=1)
    progress: bool = option(True, help="Show a progress bar while training.")
    resume: str | None = option(
        None,
        help="Continue a run from its last checkpoint: its folder, or 'auto' for the newest "
        "run of this plugin in --out. The run's own settings are the defaults; --epochs "
        "and --max-steps count the total.",
    )
    force: bool = option(
        False,
        help="Resume even when the hyperparameters differ from the run's own (they take "
        "effect, optimizer settings included; config.json keeps the change).",
    )
    on_nonfinite: str = option(
        "stop",
        help="A NaN or inf loss stops the run (the last good checkpoint is kept), or skips "
        "that update (one device sync per update; one process only).",
        choices=NONFINITE_POLICIES,
    )
    log: tuple[str, ...] = option(
        (),
        help="Also log to experiment trackers: tensorboard and/or mlflow (comma-separated; "
        "each needs its extra, pip install 'zoo[tensorboard]').",
        choices=TRACKERS,
    )
    log_dir: str | None = option(
        None,
        help="TensorBoard's folder: each run logs to DIR/<run folder name> (default: "
        "RUN/tensorboard).",
    )
    mlflow_uri: str | None = option(
        None,
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else an SQLite store, "
        "mlflow.db, beside the --out folder).",
    )
    mlflow_experiment: str | None = option(
        None, help="MLflow experiment for the run (default: the plugin's name)."
    )


SETTING_NAMES = frozenset(field.name for field in attrs.fields(RunSettings))

# What may change when a run is resumed: how long and where it trains, not what it learns.
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "max_steps",
        "device",
        "out",
        "data_dir",
        "eval_batch_size",
        "progress",
        "threads",
        "compile",
        "compile_mode",
        "channels_last",
        "test_size",
        "resume",
        "force",
        "on_nonfinite",
        "log",
        "log_dir",
        "mlflow_uri",
        "mlflow_experiment",
    }
)

TRAIN_IMAGES = 60_000  # Fashion-MNIST's training split (its files are checked by digest)


def steps_per_epoch(images: int, batch_size: int, world_size: int = 1) -> int:
    """Batches per epoch and process: a last batch of one image is dropped (batch norm)."""
    per_rank = images // world_size
    return per_rank // batch_size + (per_rank % batch_size > 1)


def zero_steps_message(images: int, batch_size: int) -> str:
    return (
        f"--train-size: {images} training image(s) at batch {batch_size} give 0 training "
        "steps per epoch (a last batch of one image is dropped); use at least 2 images"
    )
