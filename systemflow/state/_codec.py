"""
The codec: values to JSON text and back, for journals, inputs and outputs.

Built on one cattrs converter (the ``preconf.json`` one, adjusted). What it stores:

- attrs classes and dataclasses as objects tagged with their class name,
  ``{"$type": "Order", "id": 1, ...}``. The tag lets a union of classes (even
  of classes with the same fields) be read back; it is compared with the
  classes the static type names, never imported. Outside a union it is ignored,
  so a field added with a default reads old records.
- enums by value; ``datetime``, ``date`` and ``time`` in ISO 8601 (naive stays
  naive, aware keeps its UTC offset and comes back with a fixed-offset
  ``datetime.timezone``: the same instant and wall time, without the zone's
  rules); ``timedelta`` as ``"P1DT3600.000001S"``; ``UUID``, ``Decimal`` (exactly)
  and ``pathlib.Path`` as strings; ``bytes`` in standard base64.
- lists, tuples, dicts, sets and frozensets as arrays and objects; sets sorted,
  so equal values give equal text in every process. Dict keys come back typed
  (``dict[int, str]``) although JSON keys are strings.
- Unions: ``None`` is ``null``; an object tagged with a member class's name is
  that class; anything else goes to the first member that accepts it, in
  declaration order (so ``str | UUID`` reads every string as a ``str``).

Reading back is strict: an ``int`` is not read from ``"1"`` or ``1.5``, a
``str`` not from ``5``, non-finite numbers are refused. Floats must be finite
when stored too (``allow_nan=False``): NaN and infinities are not JSON, and a
NaN input would never equal itself. Text is ASCII, compact.

Whatever fails, on the way in or out, is a ``SerializationError`` naming the
node's path, the run and the type. Nothing read back is unpickled, evaluated or
executed, and no name read from the data is ever imported.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import functools
import json
import math
import re
import types
import typing
import uuid
from collections import abc
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any, ClassVar, Final, final

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, mapping_structure_factory
from cattrs.preconf.json import make_converter

from .._core import SerializationError, format_path

if TYPE_CHECKING:
    from .._core import Path

_TAG: Final = "$type"
"""The key naming an object's class; no Python field name can collide with it."""

_NONE_TYPE: Final = type(None)
_TIMEDELTA = re.compile(r"(-?)P(\d{1,9})DT(\d{1,5})\.(\d{6})S")
_MAX_REASONS: Final = 3


@final
class Codec:
    """
    Strictly private: turns values into JSON text and back.

    Build one and keep it (``Codec.shared()``): building the converter is the slow part.
    """

    __slots__ = ("_converter", "_decode", "_encode")

    _shared: ClassVar[Codec | None] = None

    def __init__(self) -> None:
        self._converter = _make_converter()
        self._encode = json.JSONEncoder(
            separators=(",", ":"), allow_nan=False, default=_refuse
        ).encode
        self._decode = json.JSONDecoder(
            parse_float=_finite_float, parse_constant=_refuse_constant
        ).decode

    @classmethod
    def shared(cls) -> Codec:
        """
        Return the process-wide codec.
        """
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def dumps(self, value: Any, *, path: Path, run_id: str | None) -> str:
        """
        Return ``value`` as compact JSON text.

        Raises:
            SerializationError: Some part of ``value`` has no JSON form.
        """
        try:
            scalar = _SCALAR_JSON.get(type(value))
            if scalar is not None:  # the usual step output: skip the converter and encoder
                text = scalar(value)
                if text is not None:
                    return text
            return self._encode(self._converter.unstructure(value))
        except Exception as exc:
            msg = f"cannot store the value of {_where(path, run_id)}: {self._explain(value, exc)}"
            raise SerializationError(msg, path=path, run_id=run_id, type=type(value)) from exc

    def loads(self, text: str | bytes, type_: Any, *, path: Path, run_id: str | None) -> Any:
        """
        Read JSON text back as ``type_`` (plain JSON data if ``type_`` is ``Any``).

        Raises:
            SerializationError: The text is not JSON, or not a ``type_``.
        """
        try:
            data = self._decode(text.decode() if isinstance(text, bytes) else text)
        except Exception as exc:
            msg = (
                f"cannot read back the value of {_where(path, run_id)}: "
                f"the stored text is not valid JSON ({_shorten(str(exc))})"
            )
            raise SerializationError(msg, path=path, run_id=run_id, type=type_) from exc
        return self.structure(data, type_, path=path, run_id=run_id)

    def structure(self, data: Any, type_: Any, *, path: Path, run_id: str | None) -> Any:
        """
        Turn plain JSON data into a ``type_`` (return it as it is if ``type_`` is ``Any``).

        Raises:
            SerializationError: ``data`` is not a ``type_``.
        """
        if type_ is Any or type_ is object:
            return data
        try:
            return self._converter.structure(data, type_)
        except Exception as exc:
            reasons = cattrs.transform_error(exc, path="$", format_exception=_format_exception)
            more = len(reasons) - _MAX_REASONS
            shown = "; ".join(reasons[:_MAX_REASONS]) + (f"; and {more} more" if more > 0 else "")
            msg = (
                f"cannot read back the value of {_where(path, run_id)} "
                f"as {_type_name(type_)}: {shown}"
            )
            raise SerializationError(msg, path=path, run_id=run_id, type=type_) from exc

    def _explain(self, value: Any, exc: Exception) -> str:
        """
        Say which part of ``value`` cannot be stored, and why (only called on failure).
        """
        found = self._find_unstorable(value)
        if found is None:
            if isinstance(exc, RecursionError):
                return f"{_type_name(type(value))} nests too deeply, or contains itself"
            return f"{_type_name(type(value))} cannot be stored ({type(exc).__name__}: {exc})"
        where, problem = found
        return f"{_type_name(type(value))}{where} {problem}" if where else f"the value {problem}"

    def _find_unstorable(self, value: Any) -> tuple[str, str] | None:
        """
        Walk ``value`` depth first; return where the first part that fails on its own is.
        """
        stack: list[tuple[str, Any, Any]] = [("", value, None)]
        seen: set[int] = set()
        while stack:
            where, part, declared = stack.pop()
            parts = _parts(part, declared)
            if parts is None:
                why = self._why_unstorable(part, declared)
                if why is not None:
                    what = f"float {part!r}" if isinstance(part, float) else _type_name(type(part))
                    return where, f"is {what}, {why}"
                continue
            if id(part) in seen:  # shared, or a cycle: json.dumps says which
                continue
            seen.add(id(part))
            if isinstance(part, dict):
                for key in part:
                    if self._why_unstorable({key: None}, None) is not None:
                        kind = _type_name(type(key))
                        return where, f"has a key of type {kind}, which JSON cannot use as a key"
            stack.extend((where + suffix, *child) for suffix, *child in reversed(parts))
        return None

    def _why_unstorable(self, leaf: Any, declared: Any) -> str | None:
        try:
            self._encode(self._converter.unstructure(leaf, unstructure_as=declared))
        except _Unstorable as exc:
            return f"which {exc}"
        except ValueError as exc:
            return f"which JSON cannot represent ({_shorten(str(exc))})"
        except Exception as exc:  # noqa: BLE001 -- we are describing a failure, any failure
            return f"which cannot be stored ({type(exc).__name__}: {_shorten(str(exc))})"
        return None


# --- the converter ------------------------------------------------------------


def _make_converter() -> cattrs.Converter:
    converter = make_converter()

    checks: list[tuple[type, abc.Callable[[Any, Any], Any]]] = [
        (str, _structure_str),
        (int, _structure_int),
        (float, _structure_float),
        (bool, _structure_bool),
        (_NONE_TYPE, _structure_none),
    ]
    for type_, check in checks:
        converter.register_structure_hook(type_, check)
    converter.register_structure_hook_factory(lambda t: t is None, lambda _: _structure_none)
    codecs: list[tuple[type, abc.Callable[[Any], Any], abc.Callable[[Any, Any], Any]]] = [
        (uuid.UUID, str, _structure_uuid),
        (decimal.Decimal, str, _structure_decimal),
        (bytes, _unstructure_bytes, _structure_bytes),
        (dt.datetime, dt.datetime.isoformat, _structure_datetime),
        (dt.date, dt.date.isoformat, _structure_date),
        (dt.time, dt.time.isoformat, _structure_time),
        (dt.timedelta, _unstructure_timedelta, _structure_timedelta),
    ]
    for type_, to_json, from_json in codecs:
        # Hooks are chosen by a field's declared type: check what it holds.
        converter.register_unstructure_hook(type_, _checked(type_, to_json))
        converter.register_structure_hook(type_, from_json)

    def unstructure_class(cls: Any) -> abc.Callable[[Any], dict[str, Any]]:
        fields = make_dict_unstructure_fn(cls, converter)
        tag = _tag(cls)
        return lambda obj: {_TAG: tag, **fields(obj)}

    def unstructure_set(_: Any) -> abc.Callable[[abc.Set[Any]], list[Any]]:
        return lambda items: _sorted([converter.unstructure(item) for item in items])

    def structure_union(union: Any) -> abc.Callable[[Any, Any], Any]:
        return functools.partial(_structure_union, converter, _Union(union))

    def structure_mapping(cl: Any) -> abc.Callable[[Any, Any], Any]:
        key = typing.get_args(cl)[0]
        key_type = _JsonKey(_NONE_TYPE if key is None else key)
        origin = typing.get_origin(cl)
        to = dict if origin in {abc.Mapping, abc.MutableMapping} else origin
        return mapping_structure_factory(cl, converter, to, key_type=key_type)

    def structure_key(key: _JsonKey) -> abc.Callable[[Any, Any], Any]:
        return functools.partial(_structure_key, converter, key.type)

    converter.register_unstructure_hook_factory(_is_class, unstructure_class)
    converter.register_unstructure_hook_factory(_is_set, unstructure_set)
    converter.register_structure_hook_factory(_is_union, structure_union)
    converter.register_structure_hook_factory(_has_typed_keys, structure_mapping)
    converter.register_structure_hook_factory(_is_json_key, structure_key)
    return converter


def _finite_float_json(value: float) -> str | None:
    # As the encoder writes it; None for NaN and infinities, which it refuses (and explains).
    return float.__repr__(value) if math.isfinite(value) else None


_SCALAR_JSON: Final[dict[type, abc.Callable[[Any], str | None]]] = {
    # What the converter leaves as it is and the encoder writes (ASCII, compact),
    # exact types only: a subclass (an IntEnum, say) goes the long way.
    str: encode_basestring_ascii,
    int: int.__repr__,
    bool: {True: "true", False: "false"}.__getitem__,
    float: _finite_float_json,
    _NONE_TYPE: lambda _: "null",
}


class _Unstorable(TypeError):
    """
    Strictly private: ``json`` met an object it has no form for.
    """


def _refuse(_: object) -> typing.NoReturn:
    msg = "has no JSON form"
    raise _Unstorable(msg)


def _refuse_constant(name: str) -> typing.NoReturn:
    msg = f"{name} is not a finite number"
    raise ValueError(msg)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        msg = f"{_shorten(text)} is out of range"
        raise ValueError(msg)
    return value


def _mismatch(expected: str, got: object) -> TypeError:
    return TypeError(f"expected {expected}, got {type(got).__name__}")


def _structure_str(value: object, cl: type[str]) -> str:
    if not isinstance(value, str):
        raise _mismatch("a string", value)
    return value if cl is str else cl(value)


def _structure_int(value: object, cl: type[int]) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _mismatch("an integer", value)
    return value if cl is int else cl(value)


def _structure_float(value: object, cl: type[float]) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _mismatch("a number", value)
    if not math.isfinite(value):
        msg = f"{value} is not a finite number"
        raise ValueError(msg)
    return cl(value)


def _structure_bool(value: object, _: object) -> bool:
    if not isinstance(value, bool):
        raise _mismatch("true or false", value)
    return value


def _structure_none(value: object, _: object) -> None:
    if value is not None:
        raise _mismatch("null", value)


def _structure_uuid(value: object, cl: type[uuid.UUID]) -> uuid.UUID:
    if not isinstance(value, str):
        raise _mismatch("a UUID string", value)
    return cl(value)


def _structure_decimal(value: object, cl: type[decimal.Decimal]) -> decimal.Decimal:
    if not isinstance(value, str):
        raise _mismatch("a decimal string", value)
    try:
        return cl(value)
    except decimal.InvalidOperation:
        msg = f"{_shorten(value)!r} is not a decimal number"
        raise ValueError(msg) from None


def _unstructure_bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _structure_bytes(value: object, _: object) -> bytes:
    if not isinstance(value, str):
        raise _mismatch("a base64 string", value)
    return base64.b64decode(value, validate=True)


def _checked(cls: type, to_json: abc.Callable[[Any], Any]) -> abc.Callable[[Any], Any]:
    def unstructure(value: Any) -> Any:
        if not isinstance(value, cls) or (cls is dt.date and isinstance(value, dt.datetime)):
            msg = f"does not fit the declared type {cls.__qualname__}"
            raise _Unstorable(msg)
        return to_json(value)

    return unstructure


def _structure_datetime(value: object, _: object) -> dt.datetime:
    if not isinstance(value, str) or "T" not in value:  # a date alone is not a datetime
        raise _mismatch("an ISO 8601 datetime", value)
    return dt.datetime.fromisoformat(value)


def _structure_date(value: object, _: object) -> dt.date:
    if not isinstance(value, str):
        raise _mismatch("an ISO 8601 date", value)
    return dt.date.fromisoformat(value)


def _structure_time(value: object, _: object) -> dt.time:
    if not isinstance(value, str):
        raise _mismatch("an ISO 8601 time", value)
    return dt.time.fromisoformat(value)


def _unstructure_timedelta(value: dt.timedelta) -> str:
    sign, value = ("-", -value) if value < dt.timedelta(0) else ("", value)
    return f"{sign}P{value.days}DT{value.seconds}.{value.microseconds:06d}S"


def _structure_timedelta(value: object, _: object) -> dt.timedelta:
    match = _TIMEDELTA.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _mismatch("a duration like P1DT3600.000000S", value)
    sign, days, seconds, micros = match.groups()
    delta = dt.timedelta(days=int(days), seconds=int(seconds), microseconds=int(micros))
    return -delta if sign else delta


def _parts(value: Any, declared: Any) -> list[tuple[str, Any, Any]] | None:
    """
    Return a container's parts as ``(where, part, declared type or None)``; ``None`` for a leaf.
    """
    cls = type(value)
    if attrs.has(cls) or dataclasses.is_dataclass(cls):
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # noqa: BLE001 -- only used to describe a failure
            hints = {}
        fields = attrs.fields(cls) if attrs.has(cls) else dataclasses.fields(value)
        names = [f.name for f in fields]
        return [(f".{n}", getattr(value, n, None), hints.get(n)) for n in names]
    args = typing.get_args(declared) if not _is_union(declared) else ()
    if isinstance(value, dict):
        of = args[1] if len(args) == 2 else None  # noqa: PLR2004 -- dict[K, V]
        return [(f"[{_shorten(repr(k), 40)}]", v, of) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        if isinstance(value, tuple) and len(args) == len(value) and ... not in args:
            return [
                (f"[{i}]", item, of) for i, (item, of) in enumerate(zip(value, args, strict=True))
            ]
        of = args[0] if args else None
        return [(f"[{i}]", item, of) for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return [("[*]", item, args[0] if args else None) for item in value]
    return None


def _sorted(items: list[Any]) -> list[Any]:
    try:
        return sorted(items)
    except TypeError:  # mixed or unorderable elements: order by their JSON text
        return sorted(items, key=functools.partial(json.dumps, sort_keys=True))


# --- classes, unions and dict keys ----------------------------------------------


def _is_class(type_: Any) -> bool:
    origin = typing.get_origin(type_) or type_
    return isinstance(origin, type) and (attrs.has(origin) or dataclasses.is_dataclass(origin))


def _tag(cls: Any) -> str:
    return str((typing.get_origin(cls) or cls).__qualname__)


def _is_set(type_: Any) -> bool:
    origin = typing.get_origin(type_) or type_
    return origin in {set, frozenset, abc.Set, abc.MutableSet}


def _is_union(type_: Any) -> bool:
    return typing.get_origin(type_) in {typing.Union, types.UnionType}


@final
class _Union:
    """
    Strictly private: a union's members, sorted out once.

    ``by_tag`` maps each member class's tag to it, or to ``None`` when two
    members share the tag (``Box[int] | Box[str]``): those are tried in turn.
    """

    __slots__ = ("by_tag", "members", "name", "nullable")

    def __init__(self, union: Any) -> None:
        args = typing.get_args(union)
        self.name = _type_name(union)
        self.nullable = _NONE_TYPE in args
        self.members = tuple(arg for arg in args if arg is not _NONE_TYPE)
        self.by_tag: dict[str, Any] = {}
        for arg in filter(_is_class, self.members):
            tag = _tag(arg)
            self.by_tag[tag] = None if tag in self.by_tag else arg


def _structure_union(converter: cattrs.Converter, union: _Union, data: Any, _: Any) -> Any:
    if data is None and union.nullable:
        return None
    if union.by_tag and isinstance(data, dict) and _TAG in data:
        tag = data[_TAG]
        if not isinstance(tag, str) or tag not in union.by_tag:
            msg = f"{_TAG} names none of the classes of {union.name}"
            raise ValueError(msg)
        if union.by_tag[tag] is not None:
            return converter.structure(data, union.by_tag[tag])
    for member in union.members:
        try:
            return converter.structure(data, member)
        except Exception:  # noqa: BLE001, S112 -- not this member; try the next
            continue
    msg = f"expected {union.name}, got {type(data).__name__} that fits none of its members"
    raise TypeError(msg)


@attrs.frozen
class _JsonKey:
    """
    Strictly private: a dict's key type, read from JSON's string keys.
    """

    type: Any


def _has_typed_keys(type_: Any) -> bool:
    origin = typing.get_origin(type_)
    if origin not in {dict, abc.Mapping, abc.MutableMapping}:
        return False
    args = typing.get_args(type_)
    return len(args) == 2 and args[0] is not str and args[0] is not Any  # noqa: PLR2004


def _is_json_key(type_: Any) -> bool:
    return isinstance(type_, _JsonKey)


def _structure_key(converter: cattrs.Converter, key_type: Any, key: Any, _: Any) -> Any:
    try:
        return converter.structure(key, key_type)
    except Exception:
        # json.dumps wrote an int, float, bool or None key as its JSON text.
        if not isinstance(key, str):
            raise
        try:
            decoded = _KEY_DECODER.decode(key)
        except ValueError:
            decoded = _NOT_JSON
        if decoded is _NOT_JSON:
            raise  # not JSON text either: report the first failure
        return converter.structure(decoded, key_type)


_NOT_JSON: Final = object()


_KEY_DECODER: Final = json.JSONDecoder(parse_float=_finite_float, parse_constant=_refuse_constant)


# --- messages -------------------------------------------------------------------


def _where(path: Path, run_id: str | None) -> str:
    node = repr(format_path(path))
    return f"{node} in run {run_id}" if run_id else node


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(type_: Any) -> str:
    """
    Name a type for humans: ``list[Order]``, ``Order | None``, ``int``.
    """
    for special, name in ((None, "None"), (_NONE_TYPE, "None"), (Ellipsis, "...")):
        if type_ is special:
            return name
    args = typing.get_args(type_)
    origin = typing.get_origin(type_)
    if _is_union(type_):
        return " | ".join(map(_type_name, args))
    if origin is typing.Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin is not None and args and all(isinstance(a, type) or a is ... for a in args):
        return f"{_type_name(origin)}[{', '.join(map(_type_name, args))}]"
    if isinstance(type_, type):
        return type_.__qualname__
    return repr(type_).replace("typing.", "")


def _format_exception(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    text = _shorten(str(exc)) or type(exc).__name__
    if type_ is None or (isinstance(exc, TypeError) and text.startswith("expected")):
        return text
    return f"not a valid {_type_name(type_)} ({text})"


# --- annotations ----------------------------------------------------------------


def encode_payload(run_id: str, signal: str, payload: Any) -> str:
    """
    Encode a signal's payload as JSON text, or fail naming the run and signal.
    """
    try:
        return Codec.shared().dumps(payload, path=(), run_id=run_id)
    except SerializationError as exc:
        msg = f"signal {signal!r} for run {run_id}: {exc}"
        raise SerializationError(msg, run_id=run_id, type=type(payload)) from exc
