"""The one hook a plugin module implements.

Built-ins (zoo's own entry points), installed distributions (entry-point group
``zoo``) and a user's local modules (a registry.toml of their own) all register
through this hook, so there is a single path for every plugin.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT = "zoo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_plugins(register: Callable[[type], None]) -> None:
    """Call ``register(PluginClass)`` once for every plugin class the module offers.

    The module's import and this hook run with stdout sent to stderr (so ``zoo list
    --json`` stays JSON); anything they raise, ``sys.exit()`` and a self-raised
    KeyboardInterrupt included, marks the module broken instead of stopping zoo."""
