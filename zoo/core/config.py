"""Typed, validated hyperparameters: attrs classes <-> CLI options, TOML files and kwargs.

A plugin's ``Config`` is an attrs class whose fields are declared with :func:`option`.
That one declaration gives the CLI option (name, type, default, help), the TOML key
and the validation, so names and defaults can never drift apart.
"""

from __future__ import annotations

import difflib
import math
import os
import stat
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from zoo.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def option(
    default: Any,
    *,
    help: str,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: bool = False,
    choices: Iterable[Any] | None = None,
    converter: Callable[[Any], Any] | None = None,
) -> Any:
    """Declare one hyperparameter: its default, its help text and the values it accepts.

    ``converter`` normalises a value before validation (it may raise ConfigError)."""
    choices = tuple(choices) if choices is not None else None
    metadata = {
        "help": help,
        "min": min,
        "max": max,
        "min_exclusive": min_exclusive,
        "choices": choices,
    }
    return attrs.field(
        default=default, validator=_check_bounds, metadata=metadata, converter=converter
    )


def _check_bounds(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    meta = attribute.metadata
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if item is None:
            continue
        if meta.get("choices") is not None and item not in meta["choices"]:
            allowed = ", ".join(map(str, meta["choices"]))
            raise ValueError(f"must be one of {allowed}")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("must be a finite number")
        low, high = meta.get("min"), meta.get("max")
        if low is not None:
            if meta.get("min_exclusive") and not item > low:
                raise ValueError(f"must be > {low}")
            if not meta.get("min_exclusive") and not item >= low:
                raise ValueError(f"must be >= {low}")
        if high is not None and not item <= high:
            raise ValueError(f"must be <= {high}")


@attrs.frozen
class FieldSpec:
    """What the CLI, the TOML reader and ``zoo info`` need to know about one field."""

    name: str
    kind: type  # int, float, str, bool, or tuple for tuple[X, ...]
    item_kind: type | None
    optional: bool
    default: Any
    help: str
    choices: tuple[Any, ...] | None

    @property
    def flag(self) -> str:
        return flag(self.name)

    @property
    def type_name(self) -> str:
        base = f"{self.item_kind.__name__} list" if self.kind is tuple else self.kind.__name__
        return f"{base} | None" if self.optional else base


def field_specs(cls: type) -> list[FieldSpec]:
    """Describe the fields of an attrs config class in declaration order."""
    try:
        attrs.resolve_types(cls)
    except Exception as error:  # a string annotation naming nothing: NameError, ...
        raise TypeError(
            f"{cls.__qualname__}: cannot resolve its field types "
            f"({type(error).__name__}: {error}); import the types its annotations name"
        ) from None
    specs = []
    for field in attrs.fields(cls):
        kind, item_kind, optional = _unpack_type(field.type, cls, field.name)
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        specs.append(
            FieldSpec(
                name=field.name,
                kind=kind,
                item_kind=item_kind,
                optional=optional,
                default=default,
                help=field.metadata.get("help", ""),
                choices=field.metadata.get("choices"),
            )
        )
    return specs


_SCALARS = (bool, int, float, str)


def _unpack_type(tp: Any, cls: type, name: str) -> tuple[type, type | None, bool]:
    optional = False
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            tp, optional = rest[0], True
            args = typing.get_args(tp)
    if tp in _SCALARS:
        return tp, None, optional
    is_tuple = typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis
    if is_tuple and args[0] in _SCALARS:
        return tuple, args[0], optional
    raise TypeError(
        f"{cls.__qualname__}.{name}: unsupported config type {tp!r}; "
        "use bool, int, float, str, tuple[X, ...] or X | None"
    )


def _coerce(spec: FieldSpec, value: Any, label: str) -> Any:
    if value is None:
        if spec.optional:
            return None
        raise ConfigError(f"{label}: a value is required")
    if spec.kind is tuple:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(
                f"{label}: expected a list of {spec.item_kind.__name__}, got {value!r}"
            )
        return tuple(_coerce_scalar(spec.item_kind, item, label) for item in value)
    return _coerce_scalar(spec.kind, value, label)


def _coerce_scalar(kind: type, value: Any, label: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"{label}: expected {kind.__name__}, got {value!r}")


def build(
    cls: type,
    values: Mapping[str, Any],
    *,
    label: Callable[[str], str] = str,
) -> Any:
    """Make a validated ``cls`` from loose values; every failure is a one-line ConfigError."""
    specs = {spec.name: spec for spec in field_specs(cls)}
    unknown = [key for key in values if key not in specs]
    if unknown:
        raise ConfigError(unknown_key_message(unknown[0], specs, label))
    kwargs = {key: _coerce(specs[key], value, label(key)) for key, value in values.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        name = _failing_field(cls, kwargs)
        if name is not None and name not in kwargs:  # the class's own default is bad
            default = attrs.fields_dict(cls)[name].default
            raise ConfigError(
                f"{cls.__qualname__}.{name}: its default {default!r} {error}; "
                "fix the default in the plugin"
            ) from None
        shown = label(name) if name else cls.__name__
        got = f" (got {kwargs[name]!r})" if name in kwargs else ""
        raise ConfigError(f"{shown}: {error}{got}") from None


def unknown_key_message(key: str, known: Iterable[str], label: Callable[[str], str] = str) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {label(close[0])}?" if close else ""
    return f"unknown option {label(key)}{hint}"


def _failing_field(cls: type, kwargs: Mapping[str, Any]) -> str | None:
    """Find which field's validator rejects ``kwargs`` (or, for a field not given, its
    default) so the error can name it."""
    for field in attrs.fields(cls):
        value = kwargs.get(field.name, field.default)
        if value is attrs.NOTHING or isinstance(value, attrs.Factory):  # type: ignore[arg-type]
            continue
        if check_field(field, value) is not None:
            return field.name
    return None


def check_field(field: attrs.Attribute, value: Any) -> str | None:
    """Why ``value`` is refused by ``field``'s converter or validator, or None."""
    try:
        value = field.converter(value) if field.converter else value
        if field.validator is not None:
            field.validator(None, field, value)
    except (ValueError, TypeError) as error:
        return str(error)
    return None


def check_defaults(cls: type) -> None:
    """Refuse a config class whose own defaults break its bounds: a plugin bug that
    would otherwise surface as a user's error on every run."""
    for field in attrs.fields(cls):
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory() if not default.takes_self else attrs.NOTHING
        if default is attrs.NOTHING:
            continue
        problem = check_field(field, default)
        if problem is not None:
            raise ValueError(
                f"{cls.__qualname__}.{field.name}: its default {default!r} is refused by its "
                f"own bounds ({problem}); fix the default in the plugin"
            )


MAX_TOML_BYTES = 1_000_000  # a config or registry file is a few lines; more is a mistake


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file; a missing, malformed or odd file (a pipe, a device, a folder,
    a huge file) is a ConfigError naming it, refused before it is opened so nothing hangs."""
    path = Path(path)
    try:
        _check_regular(path, os.stat(path))
        # O_NONBLOCK: should the path turn into a pipe after the check, opening never blocks
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        with os.fdopen(os.open(path, flags), "rb") as handle:
            _check_regular(path, os.fstat(handle.fileno()))
            raw = handle.read(MAX_TOML_BYTES + 1)
        _check_size(path, len(raw))  # it grew after the check
        return tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None


def _check_regular(path: Path, info: os.stat_result) -> None:
    mode = info.st_mode
    if not stat.S_ISREG(mode):
        kind = (
            "a folder" if stat.S_ISDIR(mode)
            else "a named pipe" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "something else"
        )  # fmt: skip
        raise ConfigError(f"config file {path} is {kind}, not a regular file; give a TOML file")
    _check_size(path, info.st_size)


def _check_size(path: Path, size: int) -> None:
    if size > MAX_TOML_BYTES:
        raise ConfigError(
            f"config file {path} is larger than {MAX_TOML_BYTES // 1_000_000} MB; "
            "a file of options is a few lines, give the right file"
        )


def flag(name: str) -> str:
    """The command-line flag of an option name: ``max_steps`` -> ``--max-steps``."""
    return "--" + name.replace("_", "-")


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-friendly dict of an attrs config (tuples become lists)."""
    return attrs.asdict(config)
