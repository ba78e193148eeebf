"""Plugin discovery and lookup.

Three sources feed one pluggy hook (``register_plugins``): the entry-point group
``zoo`` (zoo's own entry points are the built-ins; every other distribution's are
third-party plugins), and local modules named in a user's registry.toml (``ZOO_REGISTRY`` or
``--registry``). A plugin that fails to load is recorded as *broken* and reported; it
never takes the others down unless ``ZOO_STRICT_PLUGINS=1``.

Plugin code (imports, the hook, class checks) runs inside :func:`_plugin_code`: whatever
it raises, ``sys.exit`` and ``KeyboardInterrupt`` included, marks that plugin broken, and
what it prints goes to stderr, never into machine-readable stdout. A real Ctrl-C still
stops zoo: SIGINT is watched while plugin code runs, so only a KeyboardInterrupt the
plugin raises itself is contained.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pluggy

from zoo.core import hookspecs
from zoo.core.config import check_defaults, field_specs, read_toml
from zoo.core.contract import TASKS, Plugin, PluginInfo
from zoo.core.errors import ConfigError, PluginLoadError, UnknownPluginError, one_line
from zoo.core.settings import SETTING_NAMES

ENTRY_POINT_GROUP = "zoo"
# The built-ins are the entry points of zoo's own distribution: its metadata travels with
# it into every install mode (editable, venv, --user, --target), where a data file such as
# a catalogue would have to be searched for under a different prefix in each.
OWN_DISTRIBUTION = "zoo"
NO_BUILTINS = (
    "zoo: no built-in plugins: zoo's package metadata (its `zoo` entry points) is not on "
    "the path; install zoo (`bash setup.sh`, or `pip install -e .` in a checkout)"
)
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


def _own_entry_points() -> list[importlib.metadata.EntryPoint]:
    """zoo's own plugin modules, each once, from the copies of its metadata on the path
    that belong to this version (a leftover ``zoo.egg-info`` or an older install must
    not add or hide built-ins); from every copy where none matches the version."""
    from zoo.core import __version__

    copies = [
        (dist.version, list(dist.entry_points.select(group=ENTRY_POINT_GROUP)))
        for dist in importlib.metadata.distributions(name=OWN_DISTRIBUTION)
    ]
    current = [points for version, points in copies if version == __version__ and points]
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for points in current or [points for _, points in copies]:
        for ep in points:
            found.setdefault(ep.value, ep)
    return list(found.values())


def _distribution(ep: importlib.metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    return (dist.name, dist.version) if dist else (None, None)


def strict_from_env() -> bool:
    return os.environ.get("ZOO_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes")


def _warn(message: str) -> None:
    print(f"zoo: warning: {message}", file=sys.stderr)


class Registry:
    """Finds plugins on first use; ``list``, ``get`` and ``register`` are the public verbs."""

    def __init__(
        self,
        *,
        builtins: bool = True,
        user_registry: str | os.PathLike | None = None,
        entry_points: bool = True,
        strict: bool | None = None,
        warn: Callable[[str], None] = _warn,
    ) -> None:
        self._builtins = builtins
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
        if task is not None:
            check_task(task)
        entries = list(self._load().values())
        if include_broken:
            entries += self._broken
        if pattern:
            entries = [e for e in entries if fnmatch.fnmatch(e.name, pattern.lower())]
        if task is not None:
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
        if self._builtins:
            own = _own_entry_points()
            if not own:
                self._warn(NO_BUILTINS)
            yield from (_Source("builtin", ep.value, ep.load) for ep in own)
        if self._entry_points:
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                if _distribution(ep)[0] != OWN_DISTRIBUTION:
                    yield _Source("entry point", f"{ep.name} = {ep.value}", ep.load,
                                  *_distribution(ep))  # fmt: skip
        if self._user_registry is not None:
            yield from _registry_file_sources(self._user_registry, "local", self._warn)

    def _load_source(self, source: _Source) -> None:
        module, error = _plugin_code(source.load)
        if error is not None:
            self._report(source, None, f"failed to load: {_describe(error)}")
            return
        problem = self._register_module(module, source)
        if problem is not None:
            self._report(source, None, problem)
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
        _, error = _plugin_code(lambda: impls[0].function(register=registered.append))
        if error is not None:
            self._report(source, None, f"register_plugins {_describe(error, 'raised ')}")
            return
        for plugin in registered:
            self._add_plugin(plugin, source)

    def _register_module(self, module: Any, source: _Source) -> str | None:
        """Hand the module's hooks to pluggy; the problem in one line, or None."""
        if self.manager.is_registered(module) or self.manager.has_plugin(source.origin):
            other = self.manager.get_name(module) or source.origin
            return f"module {other} is already loaded from another source; name it once"

        def register() -> None:
            self.manager.register(module, name=source.origin)
            self.manager.check_pending()

        _, error = _plugin_code(register)
        if error is None:
            return None
        self._unregister_module(source.origin)
        return f"failed to load: {_describe(error)}"

    def _add_plugin(self, plugin: Any, source: _Source) -> None:
        """Check one registered class (its Config's types and defaults run plugin code)."""
        entry, error = _plugin_code(lambda: self._make_entry(plugin, source))
        name = _plugin_name(plugin)
        if error is not None:
            problem = one_line(str(error)) if type(error) in (TypeError, ValueError) else None
            self._report(source, name, problem or _describe(error, "raised "))
            return
        if entry.name in self._entries:
            self._report(
                source, entry.name, self._duplicate_message(entry, self._entries[entry.name])
            )
            return
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


def check_task(task: str, label: str = "task") -> None:
    """An unknown task is a mistake, not a filter that matches nothing."""
    if task not in TASKS:
        close = difflib.get_close_matches(task, TASKS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{label}: unknown task '{task}'{hint}; the tasks are {', '.join(TASKS)}")


def _plugin_code(call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """Run plugin code so that nothing it does takes zoo down: returns (result, None) or
    (None, what it raised), SystemExit and its own KeyboardInterrupt included; its stdout
    goes to stderr. A Ctrl-C that really arrives meanwhile is raised again afterwards."""
    interrupted = False

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt

    previous = _swap_sigint(on_sigint)
    try:
        with _stdout_to_stderr():
            result = call()
    except BaseException as error:  # third-party code can raise, exit or interrupt
        unwatched = previous is None and isinstance(error, KeyboardInterrupt)
        if not interrupted and not unwatched:
            return None, error
        if unwatched:
            raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if interrupted:  # also when the plugin swallowed it
        raise KeyboardInterrupt
    return result, None


def _swap_sigint(handler: Callable[[int, Any], None]) -> Any:
    """Install ``handler`` for SIGINT and return the one it replaced, where that was
    Python's default; otherwise None (another thread, or someone else's handler), and a
    KeyboardInterrupt is then never contained because it cannot be told from a real one."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None
    return signal.signal(signal.SIGINT, handler)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Point sys.stdout and file descriptor 1 at stderr, so nothing a plugin prints
    (print, os.write(1, ...), a C library) mixes into ``zoo list --json``."""
    _flush(sys.stdout, sys.__stdout__)
    saved = None
    with contextlib.suppress(OSError):
        saved = os.dup(1)
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _flush(sys.stderr, sys.__stdout__, sys.__stderr__)
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _flush(*streams: Any) -> None:
    for stream in streams:
        with contextlib.suppress(Exception):
            stream.flush()


def _describe(error: BaseException, verb: str = "") -> str:
    """What plugin code raised, in one line: ``called sys.exit(3)``, ``ValueError: ...``."""
    if isinstance(error, SystemExit):
        return one_line(f"called sys.exit({error.code!r})")
    try:
        message = str(error)
    except Exception:  # a hostile __str__
        message = "(its message cannot be shown)"
    return one_line(f"{verb}{type(error).__name__}" + (f": {message}" if message else ""))


def _plugin_name(plugin: Any) -> str | None:
    """The name a registered class claims, if it can be read safely."""
    try:
        info = getattr(plugin, "info", None)
    except Exception:
        return None
    return info.name if isinstance(info, PluginInfo) else None


def _validate_plugin_class(plugin: type) -> None:
    if not (isinstance(plugin, type) and issubclass(plugin, Plugin)):
        raise TypeError(f"{plugin!r} is not a subclass of zoo.Plugin")
    info = getattr(plugin, "info", None)
    if not isinstance(info, PluginInfo):
        raise TypeError(f"{plugin.__qualname__}.info must be a zoo.PluginInfo")
    if not attrs.has(plugin.Config):
        raise TypeError(f"{plugin.__qualname__}.Config must be an attrs class")
    check_defaults(plugin.Config)
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
    try:
        data = read_toml(path)
    except ConfigError as error:
        raise ConfigError(str(error).replace("config file", "registry file", 1)) from None
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


def _registry_file_sources(
    path: Path, kind: str, warn: Callable[[str], None] = _warn
) -> Iterable[_Source]:
    if not path.exists():
        raise ConfigError(f"registry file {path} does not exist")
    modules = _once_each(path, read_registry_file(path), warn)
    folder = path.resolve().parent
    if folder.stat().st_mode & 0o002:
        raise ConfigError(
            f"registry {path}: its folder {folder} is writable by everyone, so anybody could "
            "put code there; keep the registry and your plugin modules in a folder of your own"
        )
    for module in modules:
        _check_not_world_writable(path, module, folder)
    if str(folder) not in sys.path:
        sys.path.append(str(folder))  # sibling imports of local modules; never shadows
    for module in modules:
        yield _Source(kind, module, lambda module=module: _import_local(module, folder))


def _once_each(path: Path, modules: list[str], warn: Callable[[str], None]) -> list[str]:
    """A module listed twice is loaded once: the intent is plain, so a repeated line
    earns a warning, not a refusal of every command (nor pluggy's multi-line dump)."""
    unique = list(dict.fromkeys(modules))
    for module in unique:
        if modules.count(module) > 1:
            warn(
                f"registry {path}: module '{module}' is listed {modules.count(module)} times; "
                "it is loaded once, remove the repeated entries"
            )
    return unique


def _module_paths(module: str, folder: Path) -> list[Path]:
    """What importing ``module`` from ``folder`` reads, found without running it: each
    package folder and ``__init__.py`` on the way, the module file, its cached bytecode."""
    paths: list[Path] = []
    search = [str(folder)]
    for part in module.split("."):
        spec = importlib.machinery.PathFinder.find_spec(part, search)
        if spec is None:
            break  # a missing module is reported when it is imported
        if spec.has_location and spec.origin:
            paths.append(Path(spec.origin))
            if spec.cached:
                paths += [Path(spec.cached).parent, Path(spec.cached)]
        search = list(spec.submodule_search_locations or [])
        paths += [Path(location) for location in search]
    return paths


def _check_not_world_writable(path: Path, module: str, folder: Path) -> None:
    """A file anybody may change is code anybody may run: refuse it, naming the fix."""
    for place in _module_paths(module, folder):
        try:
            mode = place.stat().st_mode
        except OSError:
            continue  # not there (no bytecode yet), or it vanished
        if mode & 0o002:
            raise ConfigError(
                f"registry {path}: {place} (imported for module '{module}') is writable by "
                f"everyone, so anybody could change the code zoo runs; run chmod o-w {place}"
            )


def _inside(places: Iterable[str | None], folder: Path) -> bool:
    """Whether any of a module's file or package folders lies in ``folder``, as written
    (a symbolic link in the folder counts) or resolved."""
    return any(
        p and (Path(os.path.abspath(p)).is_relative_to(folder) or _resolves_inside(p, folder))
        for p in places
    )


def _resolves_inside(place: str | Path, folder: Path) -> bool:
    return Path(place).resolve().is_relative_to(folder)


def _shadows(top: str) -> ImportError:
    return ImportError(f"local module '{top}' has the name of an installed one; rename it")


def _check_links(module: str, folder: Path) -> None:
    """A symbolic link in the folder may point to another file in it, never outside."""
    for place in _module_paths(module, folder):
        if not _resolves_inside(place, folder):
            link = next((p for p in [place, *place.parents] if p.is_symlink()), place)
            raise ImportError(
                f"local module '{module}': {link} is a symbolic link to {link.resolve()}, "
                f"outside the registry folder {folder}; move or copy the module into {folder}"
            )


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
    _check_links(module, folder)
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
