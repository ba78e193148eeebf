"""Loading a trained run: its plugin rebuilt from config.json, its weights from
model.safetensors, in eval mode. The engine does it (``zoo.load`` is this), so the task
layers that need another run, such as an attack's targets, load it without the API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from zoo.core import config as configs
from zoo.core.contract import TrainablePlugin
from zoo.core.errors import RunError
from zoo.core.registry import default_registry
from zoo.core.runs import CONFIG_FILE, RunRecord, read_run
from zoo.core.settings import RunSettings


@attrs.define
class LoadedRun:
    """A run folder with its plugin rebuilt and its weights loaded, in eval mode."""

    record: RunRecord
    plugin: Any

    @property
    def path(self) -> Path:
        return self.record.path

    @property
    def model(self):
        """The plugin's networks (a ``torch.nn.ModuleDict``)."""
        return self.plugin.modules

    def predict(self, images):
        """Classifier logits for images scaled to the plugin's ``pixel_range``."""
        if not hasattr(self.plugin, "predict"):
            raise RunError(
                f"plugin '{self.record.plugin}' is not a classifier: it has no predict()"
            )
        return self.plugin.predict(images)


def load(run_dir: str | os.PathLike, *, device: str = "cpu") -> LoadedRun:
    """Rebuild a trained run's plugin from config.json and model.safetensors."""
    from zoo.engine import checkpoints
    from zoo.engine.devices import resolve_device
    from zoo.engine.trainer import setup_modules

    record = read_run(run_dir)
    plugin_class = default_registry().get(record.plugin)
    if not issubclass(plugin_class, TrainablePlugin):
        raise RunError(
            f"{record.path} is a run of '{record.plugin}' (task {plugin_class.info.task}), "
            "which trains no model to load"
        )
    label = lambda key: f"{CONFIG_FILE}: {key}"  # noqa: E731
    config = configs.build(plugin_class.Config, record.config, label=label)
    settings = configs.build(RunSettings, record.settings, label=label)
    plugin = plugin_class(config)
    # the layout the run trained and evaluated in (channels-last convolutions round
    # differently), so predictions match the trainer's; never compiled for loading
    layout = attrs.evolve(settings, compile=False)
    modules = setup_modules(plugin, resolve_device(device), layout)
    checkpoints.load_weights(record.path, modules, record.plugin)
    modules.eval()
    return LoadedRun(record, plugin)
