"""The lowest layer: the plugin contract, the registry, configs and settings, run
folders, their history and lock, data and class names, errors. (Checkpoints, devices
and distributed setup handle tensors: they live in zoo.engine.)

It knows no task and imports no torch at import time (``zoo list`` and ``zoo --help``
stay fast); everything above it builds on these pieces.
"""

__version__ = "0.1.0"
