"""JSON files as declared types: plain data checked against a dataclass, and back.

run.json (:mod:`bench.record`) and the plan file (:mod:`bench.plans.plan`) are dataclasses;
this module turns parsed JSON into them, checking every value against the annotated type,
and turns them back into JSON data in field order. Unknown keys are ignored, so a file
written by a newer release of the same schema still reads. No torch.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, TypeVar, Union

T = TypeVar("T")

#: Field metadata: leave the key out of the file when its value is None.
OMIT_NONE = {"omit_none": True}


class SchemaError(Exception):
    """Plain data that does not fit the declared type; the message names the dotted key."""


def missing_keys(cls: type, data: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys a readable file must have and ``data`` lacks, in the schema's order.

    A field is required when it has no default, or when the class lists it in ``_required``.
    """
    hints = typing.get_type_hints(cls)
    out = []
    required = _required(cls)
    for name in [*required, *(f.name for f in dataclasses.fields(cls) if f.name not in required)]:
        nested = _dataclass_in(hints[name])
        if name not in data:
            if name in required:
                out += missing_keys(nested, {}, f"{prefix}{name}.") if nested else [prefix + name]
        elif nested and isinstance(data[name], dict):
            out += missing_keys(nested, data[name], f"{prefix}{name}.")
    return out


def from_plain(tp: type[T], value: Any, where: str = "") -> T:
    """``value`` checked against the type ``tp``; dataclasses are built from JSON objects.

    Raises:
        SchemaError: a value of the wrong type (``config.seed is a string, expected an integer``).
    """
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _from_union(tp, value, where)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _from_object(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise _wrong(tp, value, where)
        (item,) = typing.get_args(tp)
        return [from_plain(item, v, f"{where}[{i}]") for i, v in enumerate(value)]  # type: ignore[return-value]
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(tp, value, where)
        _, item = typing.get_args(tp)
        return {k: from_plain(item, v, f"{where}.{k}") for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in tp)
            raise SchemaError(f"{where} is {value!r}, expected one of: {choices}") from None
    return _from_scalar(tp, value, where)


def to_plain(value: Any) -> Any:
    """A dataclass (nested, with enums) as JSON data, keys in field order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.init and not (f.metadata.get("omit_none") and getattr(value, f.name) is None)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def json_type(value: Any) -> str:
    """How a JSON value reads to people: ``an object``, ``a list``, ``a string``..."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _required(cls: type) -> tuple[str, ...]:
    declared = cls.__dict__.get("_required")
    if declared is not None:
        return declared
    return tuple(f.name for f in dataclasses.fields(cls)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass in ``tp`` (``X`` or ``X | None``), if any."""
    for candidate in (tp, *typing.get_args(tp)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _type_text(tp: Any) -> str:
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return "a string"
    if tp is bool:
        return "true or false"
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    if origin is dict or (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return "an object"
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return " or ".join(_type_text(a) for a in args) + (" or null" if type(None) in typing.get_args(tp) else "")


def _wrong(tp: Any, value: Any, where: str) -> SchemaError:
    return SchemaError(f"{where or 'the file'} is {json_type(value)}, expected {_type_text(tp)}")


def _from_object(tp: type[T], value: Any, where: str) -> T:
    if not isinstance(value, dict):
        raise _wrong(tp, value, where)
    hints = typing.get_type_hints(tp)
    prefix = f"{where}." if where else ""
    known = {f.name for f in dataclasses.fields(tp) if f.init}
    return tp(**{k: from_plain(hints[k], v, prefix + k) for k, v in value.items() if k in known})


def _from_union(tp: Any, value: Any, where: str) -> Any:
    if value is None:
        if type(None) in typing.get_args(tp):
            return None
        raise _wrong(tp, value, where)
    options = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(options) == 1:  # X | None: X's own message names the key inside it that is wrong
        try:
            return from_plain(options[0], value, where)
        except SchemaError as exc:
            if str(exc).startswith(f"{where or 'the file'} is "):
                raise _wrong(tp, value, where) from None
            raise
    for option in options:
        try:
            return from_plain(option, value, where)
        except SchemaError:
            continue
    raise _wrong(tp, value, where)


def _from_scalar(tp: Any, value: Any, where: str) -> Any:
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise TypeError(f"schema: unsupported type {tp!r} at {where}")
    if not ok:
        raise _wrong(tp, value, where)
    return value
