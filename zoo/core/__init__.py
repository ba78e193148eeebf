"""The lowest layer: the plugin contract, the registry, configs and settings, run
folders and checkpoints, data, devices and distributed setup.

It knows no task and imports no torch at import time (``zoo list`` and ``zoo --help``
stay fast); everything above it builds on these pieces.
"""

__version__ = "0.1.0"
