"""Plugin discovery and lookup.

Three sources feed one pluggy hook (``register_plugins``): the built-in modules named
in the project's registry.toml, installed distributions through the entry-point group
``zoo``, and local modules named in a user's registry.toml (``ZOO_REGISTRY`` or
``--registry``). A plugin that fails to load is recorded as *broken* and reported; it
never takes the others down unless ``ZOO_STRICT_PLUGINS=1``.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

import attrs
import pluggy

from zoo import hookspecs
from zoo.config import field_specs, read_toml
from zoo.errors import ConfigError, PluginLoadError, UnknownPluginError
from zoo.plugin import Plugin, PluginInfo
from zoo.settings import SETTING_NAMES

ENTRY_POINT_GROUP = "zoo"


def _builtin_registry() -> Path:
    """registry.toml beside the source tree (checkout, editable install), else the copy a
    wheel installs under ``<prefix>/share/zoo``."""
    beside = Path(__file__).resolve().parent.parent / "registry.toml"
    if beside.is_file():
        return beside
    return Path(sys.prefix) / "share" / "zoo" / "registry.toml"


BUILTIN_REGISTRY = _builtin_registry()
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@attrs.frozen
class PluginEntry:
    """One registered plugin, or one that failed to load (``error`` set)."""

    name: str
    source: str  # "builtin", "entry point", "local" or "api"
    origin: str  # module or entry point it came from
    distribution: str | None = None
    version: str | None = None
    plugin: type[Plugin] | None = None
    error: str | None = None

    @property
    def broken(self) -> bool:
        return self.error is not None

    @property
    def info(self) -> PluginInfo | None:
        return self.plugin.info if self.plugin is not None else None


@attrs.frozen
class _Source:
    """A module to load and where it came from."""

    kind: str
    origin: str
    load: Callable[[], ModuleType]
    distribution: str | None = None
    version: str | None = None


def strict_from_env() -> bool:
    return os.environ.get("ZOO_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes")


def _warn(message: str) -> None:
    print(f"zoo: warning: {message}", file=sys.stderr)


class Registry:
    """Finds plugins on first use; ``list``, ``get`` and ``register`` are the public verbs."""

    def __init__(
        self,
        *,
        builtin_registry: Path | None = BUILTIN_REGISTRY,
        user_registry: str | os.PathLike | None = None,
        entry_points: bool = True,
        strict: bool | None = None,
        warn: Callable[[str], None] = _warn,
    ) -> None:
        self._builtin_registry = builtin_registry
        self._user_registry = Path(user_registry) if user_registry else None
        self._entry_points = entry_points
        self._strict = strict_from_env() if strict is None else strict
        self._warn = warn
        self._entries: dict[str, PluginEntry] | None = None
        self._broken: list[PluginEntry] = []
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)

    # -- lookup -----------------------------------------------------------------

    def list(
        self,
        pattern: str | None = None,
        *,
        task: str | None = None,
        include_broken: bool = False,
    ) -> list[PluginEntry]:
        """Entries sorted by name; ``pattern`` is an fnmatch glob such as ``"*gan*"``."""
        entries = list(self._load().values())
        if include_broken:
            entries += self._broken
        if pattern:
            entries = [e for e in entries if fnmatch.fnmatch(e.name, pattern.lower())]
        if task:
            entries = [e for e in entries if e.info is not None and e.info.task == task]
        return sorted(entries, key=lambda e: (e.name, e.broken))

    def entry(self, name: str) -> PluginEntry:
        entries = self._load()
        key = name.lower()
        if key in entries:
            return entries[key]
        close = difflib.get_close_matches(key, list(entries), n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UnknownPluginError(
            f"unknown plugin '{name}'{hint} (`zoo list` shows the installed plugins)"
        )

    def get(self, name: str) -> type[Plugin]:
        """The plugin class registered under ``name`` (case-insensitive)."""
        plugin = self.entry(name).plugin
        assert plugin is not None
        return plugin

    @property
    def broken(self) -> list[PluginEntry]:
        self._load()
        return list(self._broken)

    # -- registration ---------------------------------------------------------------

    def register(
        self, plugin: type[Plugin], *, source: str = "api", origin: str = ""
    ) -> PluginEntry:
        """Add a plugin class directly (tests, notebooks). Duplicates raise ValueError."""
        entries = self._load()
        entry = self._make_entry(plugin, _Source(source, origin or plugin.__module__, lambda: None))
        if entry.name in entries:
            raise ValueError(self._duplicate_message(entry, entries[entry.name]))
        entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._load().pop(name.lower(), None)

    # -- discovery ------------------------------------------------------------------

    def _load(self) -> dict[str, PluginEntry]:
        if self._entries is None:
            self._entries = {}
            for source in self._sources():
                self._load_source(source)
        return self._entries

    def _sources(self) -> Iterable[_Source]:
        if self._builtin_registry is not None:
            yield from _registry_file_sources(self._builtin_registry, "builtin")
        if self._entry_points:
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                dist = getattr(ep, "dist", None)
                yield _Source(
                    "entry point",
                    f"{ep.name} = {ep.value}",
                    ep.load,
                    dist.name if dist else None,
                    dist.version if dist else None,
                )
        if self._user_registry is not None:
            yield from _registry_file_sources(self._user_registry, "local")

    def _load_source(self, source: _Source) -> None:
        try:
            module = source.load()
            self.manager.register(module, name=source.origin)
            self.manager.check_pending()
        except Exception as error:  # a third-party module can raise anything on import
            self._unregister_module(source.origin)
            self._report(source, None, f"failed to load: {type(error).__name__}: {error}")
            return
        impls = [
            impl
            for impl in self.manager.hook.register_plugins.get_hookimpls()
            if impl.plugin_name == source.origin
        ]
        if not impls:
            self._report(source, None, "defines no register_plugins hook implementation")
            return
        registered: list[type] = []
        try:
            impls[0].function(register=registered.append)
        except Exception as error:
            self._report(source, None, f"register_plugins raised {type(error).__name__}: {error}")
            return
        for plugin in registered:
            try:
                entry = self._make_entry(plugin, source)
            except (TypeError, ValueError) as error:
                self._report(source, None, str(error))
                continue
            if entry.name in self._entries:
                self._report(
                    source, entry.name, self._duplicate_message(entry, self._entries[entry.name])
                )
                continue
            self._entries[entry.name] = entry

    def _unregister_module(self, origin: str) -> None:
        plugin = self.manager.get_plugin(origin)
        if plugin is not None:
            self.manager.unregister(plugin)

    def _make_entry(self, plugin: type, source: _Source) -> PluginEntry:
        _validate_plugin_class(plugin)
        return PluginEntry(
            name=plugin.info.name,
            source=source.kind,
            origin=source.origin,
            distribution=source.distribution,
            version=source.version,
            plugin=plugin,
        )

    @staticmethod
    def _duplicate_message(new: PluginEntry, old: PluginEntry) -> str:
        return (
            f"plugin name '{new.name}' from {new.source} {new.origin} is already registered "
            f"by {old.source} {old.origin}; rename one of them"
        )

    def _report(self, source: _Source, name: str | None, problem: str) -> None:
        label = name or source.origin.split(" = ")[0]
        where = f"{source.kind} {source.origin}"
        if source.distribution:
            where += f" (distribution {source.distribution} {source.version})"
        message = f"plugin {label} from {where}: {problem}"
        if self._strict:
            raise PluginLoadError(message + " (ZOO_STRICT_PLUGINS is set)")
        self._warn(message + "; other plugins still work")
        self._broken.append(
            PluginEntry(
                name=label,
                source=source.kind,
                origin=source.origin,
                distribution=source.distribution,
                version=source.version,
                error=problem,
            )
        )


def _validate_plugin_class(plugin: type) -> None:
    if not (isinstance(plugin, type) and issubclass(plugin, Plugin)):
        raise TypeError(f"{plugin!r} is not a subclass of zoo.Plugin")
    info = getattr(plugin, "info", None)
    if not isinstance(info, PluginInfo):
        raise TypeError(f"{plugin.__qualname__}.info must be a zoo.PluginInfo")
    if not attrs.has(plugin.Config):
        raise TypeError(f"{plugin.__qualname__}.Config must be an attrs class")
    clashes = sorted(spec.name for spec in field_specs(plugin.Config) if spec.name in SETTING_NAMES)
    if clashes:
        raise ValueError(
            f"{plugin.__qualname__}.Config field(s) {', '.join(clashes)} clash with run settings"
        )
    unknown_defaults = sorted(set(plugin.defaults) - SETTING_NAMES)
    if unknown_defaults:
        raise ValueError(
            f"{plugin.__qualname__}.defaults has unknown run setting(s) "
            f"{', '.join(unknown_defaults)}"
        )


def read_registry_file(path: Path) -> list[str]:
    """Module names listed in a registry.toml; anything malformed is a ConfigError."""
    data = read_toml(path)
    unknown = sorted(set(data) - {"plugins"})
    if unknown:
        raise ConfigError(
            f"registry {path}: unknown key '{unknown[0]}' (expected [[plugins]] tables)"
        )
    tables = data.get("plugins", [])
    if not isinstance(tables, list):
        raise ConfigError(f"registry {path}: 'plugins' must be an array of tables ([[plugins]])")
    modules = []
    for index, table in enumerate(tables, 1):
        if not isinstance(table, dict) or set(table) != {"module"}:
            raise ConfigError(
                f'registry {path}: plugin entry {index} must have exactly one key, module = "name"'
            )
        module = table["module"]
        if not isinstance(module, str) or not _MODULE_NAME.match(module):
            raise ConfigError(
                f"registry {path}: plugin entry {index}: {module!r} is not an importable module "
                "name (dotted Python identifiers only, no paths)"
            )
        modules.append(module)
    return modules


def _registry_file_sources(path: Path, kind: str) -> Iterable[_Source]:
    if not path.is_file():
        raise ConfigError(f"registry file {path} does not exist")
    modules = read_registry_file(path)
    if kind == "builtin":
        for module in modules:
            yield _Source(kind, module, lambda module=module: importlib.import_module(module))
        return
    folder = path.resolve().parent
    if folder.stat().st_mode & 0o002:
        raise ConfigError(
            f"registry {path}: its folder {folder} is writable by everyone, so anybody could "
            "put code there; keep the registry and your plugin modules in a folder of your own"
        )
    if str(folder) not in sys.path:
        sys.path.append(str(folder))  # sibling imports of local modules; never shadows
    for module in modules:
        yield _Source(kind, module, lambda module=module: _import_local(module, folder))


def _inside(places: Iterable[str | None], folder: Path) -> bool:
    """Whether any of a module's file or package folders lies in ``folder``."""
    return any(p and Path(p).resolve().is_relative_to(folder) for p in places)


def _shadows(top: str) -> ImportError:
    return ImportError(f"local module '{top}' has the name of an installed one; rename it")


def _import_local(module: str, folder: Path) -> ModuleType:
    """Import ``module`` from ``folder`` only: a user's registry names the user's own
    modules beside it, never an installed or standard module (those register through
    entry points), and a local module may not take an installed module's name."""
    top = module.split(".")[0]
    spec = importlib.machinery.PathFinder.find_spec(top, [str(folder)])
    if spec is None or (spec.origin is None and not spec.submodule_search_locations):
        raise ImportError(
            f"no module '{top}' in {folder} (a user registry loads only modules beside it; "
            "installed packages register through the 'zoo' entry-point group)"
        )
    loaded = sys.modules.get(top)
    if loaded is not None:
        places = [getattr(loaded, "__file__", None), *getattr(loaded, "__path__", [])]
        if not _inside(places, folder):
            raise _shadows(top)
        return importlib.import_module(module)
    try:  # every finder, editable installs' too; the folder itself is last on the path
        first = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        first = None
    places = [] if first is None else [first.origin, *(first.submodule_search_locations or [])]
    if top in sys.stdlib_module_names or (first is not None and not _inside(places, folder)):
        raise _shadows(top)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[top] = loaded
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        sys.modules.pop(top, None)
        raise
    return importlib.import_module(module)


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry: built-ins, entry points, and ``ZOO_REGISTRY`` if set."""
    global _default
    if _default is None:
        _default = Registry(user_registry=os.environ.get("ZOO_REGISTRY") or None)
    return _default


def use_registry(registry: Registry | None) -> None:
    """Replace the process-wide registry (``--registry`` on the CLI; tests)."""
    global _default
    _default = registry
