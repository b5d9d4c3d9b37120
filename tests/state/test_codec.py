"""
The codec: values to JSON text and back, and the types it reads step functions for.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import functools
import json
import pathlib
import socket
import uuid
import zoneinfo
from collections import abc  # noqa: TC003 -- output_type resolves annotations at run time
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import systemflow as sf
from systemflow._core import input_type
from systemflow._core import return_type as output_type
from systemflow.state import _codec
from systemflow.state._codec import Codec

if TYPE_CHECKING:
    from systemflow import FlowContext  # only for the type checker, on purpose

PATH = ("order", "charge")
RUN = "run-1"
T = TypeVar("T")


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Payment:
    amount: decimal.Decimal
    card: Any = None


@attrs.frozen
class Order:
    id: uuid.UUID
    total: decimal.Decimal
    placed_at: dt.datetime
    lines: tuple[str, ...] = ()
    note: str | None = None


@attrs.frozen
class Approved:
    id: int


@attrs.frozen
class Rejected:
    id: int


@attrs.frozen
class Box(Generic[T]):
    item: T


@attrs.define
class Node:
    name: str
    children: list[Node] = attrs.Factory(list)


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: Color = Color.RED


@attrs.frozen
class Dated:
    pair: tuple[int, dt.date]


@attrs.frozen
class Broken:
    later: NotDefinedAnywhere  # type: ignore[name-defined]  # noqa: F821


@attrs.frozen
class Versioned:
    id: int
    added_later: str = "default"


@pytest.fixture(name="codec")
def _codec_fixture() -> Codec:
    return Codec()


def roundtrip(codec: Codec, value: Any, type_: Any) -> Any:
    text = codec.dumps(value, path=PATH, run_id=RUN)
    return codec.loads(text, type_, path=PATH, run_id=RUN)


def dumps(codec: Codec, value: Any) -> str:
    return codec.dumps(value, path=PATH, run_id=RUN)


def loads(codec: Codec, text: str | bytes, type_: Any) -> Any:
    return codec.loads(text, type_, path=PATH, run_id=RUN)


class TestRoundTrip:
    def test_attrs_class(self, codec):
        """An attrs instance comes back equal, with its field types."""
        order = Order(
            uuid.UUID(int=7),
            decimal.Decimal("19.90"),
            dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
            ("a", "b"),
        )

        assert order == roundtrip(codec, order, Order)

    def test_dataclass(self, codec):
        """A dataclass instance comes back equal."""
        point = Point(1.5, -2.0, Color.GREEN)

        assert point == roundtrip(codec, point, Point)

    def test_generic_attrs_class(self, codec):
        """A generic attrs class is read with its type argument."""
        box = Box(decimal.Decimal("2.5"))

        assert box == roundtrip(codec, box, Box[decimal.Decimal])

    def test_recursive_class(self, codec):
        """A class that contains itself round-trips."""
        tree = Node("root", [Node("a"), Node("b", [Node("c")])])

        assert tree == roundtrip(codec, tree, Node)

    @pytest.mark.parametrize("member", [Color.RED, Level.HIGH])
    def test_enum(self, codec, member):
        """Enum members (plain and int) come back as members."""
        assert member is roundtrip(codec, member, type(member))

    def test_aware_datetime(self, codec):
        """An aware datetime keeps its instant and its UTC offset."""
        tz = dt.timezone(dt.timedelta(hours=-3, minutes=-30))
        when = dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=tz)

        back = roundtrip(codec, when, dt.datetime)

        assert when == back
        assert when.utcoffset() == back.utcoffset()

    def test_naive_datetime(self, codec):
        """A naive datetime stays naive."""
        when = dt.datetime(2026, 3, 4, 5, 6, 7, 1)  # noqa: DTZ001 -- naive on purpose

        back = roundtrip(codec, when, dt.datetime)

        assert when == back
        assert back.tzinfo is None

    def test_zoneinfo_becomes_fixed_offset(self, codec):
        """A ZoneInfo datetime keeps its wall time and offset; the zone is a fixed offset."""
        when = dt.datetime(2026, 7, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))

        back = roundtrip(codec, when, dt.datetime)

        assert when == back
        assert (when.replace(tzinfo=None), dt.timedelta(hours=2)) == (
            back.replace(tzinfo=None),
            back.utcoffset(),
        )
        assert isinstance(back.tzinfo, dt.timezone)

    @pytest.mark.parametrize(
        "value",
        [
            dt.date(2026, 2, 28),
            dt.time(23, 59, 59, 999999),
            dt.time(1, 2, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=45))),
            dt.timedelta(days=-2, seconds=5, microseconds=7),
            dt.timedelta(days=999999999, seconds=86399, microseconds=999999),
        ],
    )
    def test_other_temporal_types(self, codec, value):
        """Dates, times and timedeltas round-trip exactly."""
        assert value == roundtrip(codec, value, type(value))

    def test_uuid(self, codec):
        """A UUID round-trips."""
        value = uuid.uuid4()

        assert value == roundtrip(codec, value, uuid.UUID)

    @pytest.mark.parametrize("text", ["1.10", "-0.000", "1E+3", "123456789.123456789123456789"])
    def test_decimal_exact(self, codec, text):
        """A Decimal keeps its exact digits and exponent."""
        assert text == str(roundtrip(codec, decimal.Decimal(text), decimal.Decimal))

    def test_bytes(self, codec):
        """Bytes round-trip, stored as standard base64."""
        value = bytes(range(256))

        assert value == roundtrip(codec, value, bytes)

    def test_path(self, codec):
        """A pathlib path round-trips."""
        value = pathlib.Path("/srv/data")

        assert value == roundtrip(codec, value, pathlib.Path)

    def test_nested_containers(self, codec):
        """Lists, tuples and dicts nest, each element read with its static type."""
        value = {
            "a": [(1, decimal.Decimal("0.1"))],
            "b": [],
            "c": [(2, decimal.Decimal(-7))],
        }

        assert value == roundtrip(codec, value, dict[str, list[tuple[int, decimal.Decimal]]])

    def test_typed_dict_keys(self, codec):
        """Keys that JSON writes as strings come back as their declared type."""
        value = {1: "a", -2: "b"}

        assert value == roundtrip(codec, value, dict[int, str])

    @pytest.mark.parametrize(
        ("value", "type_"),
        [
            ({True: 1, False: 0}, dict[bool, int]),
            ({1.5: "x", -0.25: "y"}, dict[float, str]),
            ({Level.LOW: "l"}, dict[Level, str]),
            ({Color.GREEN: 1}, dict[Color, int]),
            ({uuid.UUID(int=1): 1}, dict[uuid.UUID, int]),
            ({dt.date(2026, 1, 1): 1}, dict[dt.date, int]),
            ({decimal.Decimal("1.0"): 1}, dict[decimal.Decimal, int]),
            ({None: 1}, dict[None, int]),
        ],
    )
    def test_other_dict_keys(self, codec, value, type_):
        """Bool, float, enum, UUID, date, Decimal and None keys come back typed."""
        assert value == roundtrip(codec, value, type_)

    def test_set_and_frozenset(self, codec):
        """Sets and frozensets round-trip."""
        value = (frozenset({3, 1, 2}), {"x", "y"})

        assert value == roundtrip(codec, value, tuple[frozenset[int], set[str]])

    @pytest.mark.parametrize("value", [None, Approved(1)])
    def test_optional(self, codec, value):
        """An Optional is null or the value."""
        assert value == roundtrip(codec, value, Approved | None)

    @pytest.mark.parametrize("value", [Approved(1), Rejected(1)])
    def test_union_of_classes_with_the_same_fields(self, codec, value):
        """The class tag picks the member, even when the members look alike."""
        back = roundtrip(codec, value, Approved | Rejected)

        assert (value, type(value)) == (back, type(back))

    @pytest.mark.parametrize("value", [Box(1), Box("1")])
    def test_union_of_one_generic_class(self, codec, value):
        """Members that share a tag are told apart by trying each in turn."""
        back = roundtrip(codec, value, Box[int] | Box[str])

        assert (value, type(value.item)) == (back, type(back.item))

    def test_union_in_a_list(self, codec):
        """Union members are picked per element."""
        value = [Approved(1), Rejected(2), None]

        assert value == roundtrip(codec, value, list[Approved | Rejected | None])

    @pytest.mark.parametrize(
        ("value", "type_"),
        [
            (1, int | str),
            ("1", int | str),
            (True, int | bool),
            (2.5, int | float),
            ([1], list[int] | dict[str, int]),
            ({"a": 1}, list[int] | dict[str, int]),
            (dt.date(2026, 1, 1), dt.datetime | dt.date),
            (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.date | dt.datetime),
            (Approved(3), int | Approved),
            ("green", Literal["red", "green"]),
        ],
    )
    def test_union_of_other_types(self, codec, value, type_):
        """Untagged data goes to the first member that accepts it."""
        back = roundtrip(codec, value, type_)

        assert (value, type(value)) == (back, type(back))

    def test_any_returns_plain_data(self, codec):
        """With type Any, loads returns the JSON data as it is."""
        text = dumps(codec, Approved(5))

        assert {"$type": "Approved", "id": 5} == loads(codec, text, Any)

    def test_object_returns_plain_data(self, codec):
        """object, like Any, means no structuring."""
        assert [1, "a", None] == loads(codec, '[1,"a",null]', object)

    def test_bytes_text(self, codec):
        """loads accepts UTF-8 bytes as well as str."""
        assert "é" == loads(codec, '"é"'.encode(), str)

    def test_old_record_without_a_new_field(self, codec):
        """A field added with a default reads records stored before it existed."""
        assert Versioned(1) == loads(codec, '{"$type":"Versioned","id":1}', Versioned)

    def test_structure_parsed_data(self, codec):
        """structure reads data already parsed from JSON."""
        data = {"id": str(uuid.UUID(int=7)), "total": "1", "placed_at": "2026-01-01T00:00:00Z"}

        actual = codec.structure(data, Order, path=PATH, run_id=RUN)

        assert (
            Order(uuid.UUID(int=7), decimal.Decimal(1), dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
            == actual
        )


class TestFormat:
    def test_compact_and_tagged(self, codec):
        """Text is compact JSON; classes carry a $type tag; Decimals are strings."""
        assert '{"$type":"Payment","amount":"1.50","card":null}' == dumps(
            codec, Payment(decimal.Decimal("1.50"))
        )

    def test_sets_are_sorted(self, codec):
        """Sets are stored sorted, so equal sets give equal text in every process."""
        assert '[["a","b","c"],["x",1]]' == dumps(codec, [{"c", "a", "b"}, frozenset({"x", 1})])

    def test_ascii(self, codec):
        """The text is ASCII: any store encoding holds it."""
        assert '"\\u00e9\\ud83d\\ude00"' == dumps(codec, "é😀")

    @pytest.mark.parametrize(
        "value",
        [0, -7, 2**80, True, False, None, 1.5, -0.0, 1e300, 5e-324, "", 'a"b\\\n\u2028é'],
    )
    def test_scalars_as_json_writes_them(self, codec, value):
        """Plain scalars are written exactly as json.dumps writes them, compact and ASCII."""
        assert json.dumps(value, separators=(",", ":")) == dumps(codec, value)

    def test_scalar_subclass(self, codec):
        """An int enum is stored by its value, as its enum."""
        assert "2" == dumps(codec, Level.HIGH)

    def test_bytes_are_base64(self, codec):
        """Bytes are standard base64."""
        assert '"aGk="' == dumps(codec, b"hi")

    def test_timedelta_form(self, codec):
        """A timedelta is stored as days and seconds, signed."""
        assert '["P1DT3600.000001S","-P0DT1.500000S"]' == dumps(
            codec, [dt.timedelta(days=1, hours=1, microseconds=1), dt.timedelta(seconds=-1.5)]
        )


# --- properties -----------------------------------------------------------------

offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)
# (static type, values of that type): the leaves, hashable so sets can hold them.
SCALARS: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (int, st.integers()),
    (float, st.floats(allow_nan=False, allow_infinity=False)),
    (str, st.text()),
    (bool, st.booleans()),
    (decimal.Decimal, st.decimals(allow_nan=False, allow_infinity=False)),
    (dt.datetime, st.datetimes()),
    (dt.datetime, st.datetimes(timezones=offsets)),
    (dt.date, st.dates()),
    (dt.time, st.times(timezones=st.none() | offsets)),
    (dt.timedelta, st.timedeltas()),
    (uuid.UUID, st.uuids()),
    (bytes, st.binary(max_size=20)),
    (Color, st.sampled_from(Color)),
    (Level, st.sampled_from(Level)),
]
KEYS = [(k, v) for k, v in SCALARS if k in {str, int, bool, uuid.UUID, dt.date, Level}]

Shape = tuple[Any, st.SearchStrategy[Any]]


def _containers(kids: st.SearchStrategy[Shape]) -> st.SearchStrategy[Shape]:
    def pair(a: Shape, b: Shape) -> Shape:
        return (tuple[a[0], b[0]], st.tuples(a[1], b[1]))

    return st.one_of(
        kids.map(lambda k: (list[k[0]], st.lists(k[1], max_size=3))),
        kids.map(lambda k: (tuple[k[0], ...], st.lists(k[1], max_size=3).map(tuple))),
        st.tuples(kids, kids).map(lambda ab: pair(*ab)),
        st.tuples(st.sampled_from(KEYS), kids).map(
            lambda kv: (
                dict[kv[0][0], kv[1][0]],
                st.dictionaries(kv[0][1], kv[1][1], max_size=3),
            )
        ),
        st.sampled_from(SCALARS).map(lambda k: (frozenset[k[0]], st.frozensets(k[1], max_size=3))),
        kids.map(lambda k: (k[0] | None, st.none() | k[1])),
        kids.map(lambda k: (Box[k[0]], k[1].map(Box))),
    )


shapes = st.recursive(st.sampled_from(SCALARS), _containers, max_leaves=8)
json_data = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(), kids, max_size=3),
    max_leaves=10,
)


@attrs.frozen
class Invoice:
    number: int
    customer: str
    amount: decimal.Decimal
    issued: dt.date
    due: dt.datetime
    ref: uuid.UUID
    status: Color
    lines: list[tuple[str, int]]
    paid: bool | None = None


attrs.resolve_types(Invoice)  # hypothesis infers fields from resolved annotations


class TestProperties:
    @given(st.data())
    def test_round_trip(self, data):
        """Any nested value of the supported types reads back equal, as its static type."""
        type_, values = data.draw(shapes, label="type")
        value = data.draw(values, label="value")
        codec = Codec.shared()

        assert value == roundtrip(codec, value, type_)

    @given(
        st.builds(
            Invoice,
            amount=st.decimals(allow_nan=False, allow_infinity=False),
            due=st.datetimes(timezones=offsets),
        )
    )
    def test_round_trip_built_classes(self, invoice):
        """Attrs instances built by hypothesis from their annotations round-trip."""
        assert invoice == roundtrip(Codec.shared(), invoice, Invoice)

    @given(json_data)
    def test_any_is_plain_json(self, value):
        """With type Any, whatever JSON was stored comes back as it was."""
        codec = Codec.shared()

        assert value == loads(codec, json.dumps(value), Any)

    @given(st.text() | st.binary(), st.sampled_from([int, Order, list[Approved | Rejected], Any]))
    def test_garbage_text_raises_only_serialization_error(self, text, type_):
        """Whatever text is stored, loads returns or raises SerializationError."""
        with contextlib.suppress(sf.SerializationError):
            loads(Codec.shared(), text, type_)

    @given(json_data)
    def test_tampered_data_raises_only_serialization_error(self, value):
        """Any JSON in place of an Invoice is read or refused with SerializationError."""
        with contextlib.suppress(sf.SerializationError):
            loads(Codec.shared(), json.dumps(value), Invoice | None)

    @given(st.sets(st.text(), max_size=8), st.randoms())
    def test_set_text_ignores_insertion_order(self, items, rnd):
        """Equal sets give equal text, whatever order they were built in."""
        shuffled = list(items)
        rnd.shuffle(shuffled)
        codec = Codec.shared()

        assert dumps(codec, items) == dumps(codec, set(shuffled))


# --- failures -------------------------------------------------------------------


class TestUnstorable:
    def test_plain_object(self, codec):
        """A value with no JSON form raises SerializationError naming path, run and type."""
        with pytest.raises(sf.SerializationError) as info:
            dumps(codec, object())

        assert (PATH, RUN, object) == (info.value.path, info.value.run_id, info.value.type)
        assert "'order/charge' in run run-1: the value is object, which has no JSON form" in str(
            info.value
        )

    def test_nested_names_outer_and_inner(self, codec):
        """A nested failure names the outer type, where inside it, and the inner type."""
        with socket.socket() as sock, pytest.raises(sf.SerializationError) as info:
            dumps(codec, Payment(decimal.Decimal(1), card=sock))

        assert Payment == info.value.type
        assert "Payment.card is socket, which has no JSON form" in str(info.value)

    def test_deeply_nested_location(self, codec):
        """The location walks fields, indexes and keys."""
        value = [Box({"k": [1, lambda: None]})]

        with pytest.raises(sf.SerializationError) as info:
            dumps(codec, value)

        assert "list[0].item['k'][1] is function" in str(info.value)

    def test_declared_type_mismatch(self, codec):
        """A field holding something other than its declared type fails at once."""
        with pytest.raises(sf.SerializationError) as info:
            dumps(codec, Order(uuid.UUID(int=1), "12.5", dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))

        assert "Order.total is str, which does not fit the declared type Decimal" in str(info.value)

    @pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
    def test_non_finite_float(self, codec, number):
        """NaN and infinities are refused: they are not JSON."""
        with pytest.raises(sf.SerializationError) as info:
            dumps(codec, Point(number, 0.0))

        assert f"Point.x is float {number!r}, which JSON cannot represent" in str(info.value)

    def test_declared_tuple_positions(self, codec):
        """A fixed tuple's positions are checked against their declared types."""
        with pytest.raises(sf.SerializationError) as info:
            dumps(codec, Dated((1, "2026-01-01")))  # type: ignore[arg-type]

        assert "Dated.pair[1] is str, which does not fit the declared type date" in str(info.value)

    def test_set_element(self, codec):
        """An element of a set that cannot be stored is found."""
        with pytest.raises(sf.SerializationError) as info:
            dumps(codec, {"s": frozenset({object()})})

        assert "dict['s'][*] is object, which has no JSON form" in str(info.value)

    def test_unresolvable_class(self, codec):
        """A class whose annotations cannot be resolved is refused, naming the cause."""
        with pytest.raises(sf.SerializationError) as info:
            dumps(codec, Broken(1))

        assert "Broken cannot be stored (NameError: name 'NotDefinedAnywhere'" in str(info.value)

    def test_unusable_key(self, codec):
        """A dict key JSON cannot hold is named."""
        with pytest.raises(sf.SerializationError) as info:
            dumps(codec, {"by_pair": {(1, 2): "x"}})

        assert "dict['by_pair'] has a key of type tuple" in str(info.value)

    def test_huge_int(self, codec):
        """An int past Python's digit limit is refused, not truncated."""
        with pytest.raises(sf.SerializationError, match="JSON cannot represent"):
            dumps(codec, 10**5000)

    def test_cycle(self, codec):
        """A value that contains itself is refused."""
        loop: list[Any] = []
        loop.append(loop)

        with pytest.raises(sf.SerializationError, match="contains itself"):
            dumps(codec, loop)

    def test_without_run(self, codec):
        """Outside a run the message names the path only."""
        with pytest.raises(sf.SerializationError) as info:
            codec.dumps(object(), path=(), run_id=None)

        assert str(info.value).startswith("cannot store the value of '<root>': ")

    def test_is_a_type_error(self, codec):
        """The error is also a TypeError, and keeps the cause."""
        with pytest.raises(TypeError) as info:
            dumps(codec, object())

        assert info.value.__cause__ is not None


class TestUnreadable:
    @pytest.mark.parametrize(
        ("text", "type_", "reason"),
        [
            ("{", int, "not valid JSON"),
            (b"\xff", int, "not valid JSON"),
            ("NaN", float, "not valid JSON"),
            ("1e999", float, "not valid JSON"),
            ("1" * 5000, int, "not valid JSON"),
            ("[" * 100_000, Any, "not valid JSON"),
            ('"x"', int, "expected an integer, got str @ $"),
            ("1.5", int, "expected an integer, got float @ $"),
            ("true", int, "expected an integer, got bool @ $"),
            ("5", str, "expected a string, got int @ $"),
            ("1", bool, "expected true or false, got int @ $"),
            ("1", None, "expected null, got int @ $"),
            ('"nope"', Color, "not a valid Color"),
            ('"zz"', decimal.Decimal, "'zz' is not a decimal number"),
            ('"2026-01-01"', dt.datetime, "expected an ISO 8601 datetime"),
            ('"a!"', bytes, "base64"),
            ("[1]", Approved, "@ $"),
            ('{"id":"1"}', Approved, "expected an integer, got str @ $.id"),
            ('{"id":1}', Payment, "required field missing @ $.amount"),
            ('{"$type":"Nope","id":1}', Approved | Rejected, "$type names none of the classes"),
            ('{"x":1}', dict[int, int], "expected an integer, got str @ $['x']"),
            ('[1,"a",3]', tuple[int, str], "@ $"),
            ('{"a":1}', int | list[int], "fits none of its members"),
            ("1", socket.socket, "Unsupported type"),
            ("1", uuid.UUID, "expected a UUID string, got int"),
            ("1", decimal.Decimal, "expected a decimal string, got int"),
            ("1", bytes, "expected a base64 string, got int"),
            ("1", dt.date, "expected an ISO 8601 date, got int"),
            ("1", dt.time, "expected an ISO 8601 time, got int"),
            ('"1 day"', dt.timedelta, "expected a duration like P1DT3600.000000S, got str"),
            ('"blue"', Literal["red", "green"], "as Literal['red', 'green']"),
        ],
    )
    def test_refused(self, codec, text, type_, reason):
        """Corrupt text, a wrong shape or a wrong field type is a SerializationError."""
        with pytest.raises(sf.SerializationError) as info:
            loads(codec, text, type_)

        assert reason in str(info.value)
        assert (PATH, RUN, type_) == (info.value.path, info.value.run_id, info.value.type)

    @pytest.mark.parametrize(("data", "type_"), [(float("inf"), float), ({1.5: 1}, dict[int, int])])
    def test_parsed_data_refused(self, codec, data, type_):
        """structure checks data parsed elsewhere as strictly as loads does."""
        with pytest.raises(sf.SerializationError):
            codec.structure(data, type_, path=PATH, run_id=RUN)

    def test_message_names_path_run_and_type(self, codec):
        """The message says where, in which run, and what type was expected."""
        with pytest.raises(sf.SerializationError) as info:
            loads(codec, '[{"id":"x"}]', list[Approved])

        assert (
            "cannot read back the value of 'order/charge' in run run-1 as list[Approved]: "
            "expected an integer, got str @ $[0].id"
        ) == str(info.value)

    def test_many_reasons_are_cut_short(self, codec):
        """Only the first few problems are listed."""
        with pytest.raises(sf.SerializationError) as info:
            loads(codec, '["a","b","c","d","e"]', list[int])

        assert str(info.value).endswith("; and 2 more")

    def test_no_code_from_the_data(self):
        """The codec never imports pickle or calls eval, exec or __import__."""
        tree = ast.parse(pathlib.Path(_codec.__file__).read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}

        assert set() == names & {"pickle", "eval", "exec", "__import__", "importlib", "marshal"}


# --- annotations ------------------------------------------------------------------


async def async_input_only(order: Order) -> Approved:
    raise NotImplementedError


def sync_with_context(ctx: FlowContext, order: Order) -> Approved | Rejected:
    raise NotImplementedError


async def async_with_context(ctx: FlowContext, n: int) -> list[Order]:
    raise NotImplementedError


def with_default(order: Order, retries: int = 3) -> int:
    raise NotImplementedError


def add(k: int, x: decimal.Decimal) -> decimal.Decimal:
    raise NotImplementedError


def returns_awaitable(x: int) -> abc.Awaitable[str]:
    raise NotImplementedError


def unannotated(x):
    return x


def unresolvable(x: NoSuchType) -> NoSuchType:  # type: ignore[name-defined]  # noqa: F821
    raise NotImplementedError


def generic(x: T) -> T:
    return x


def variadic(*items: int) -> int:
    raise NotImplementedError


class Charger:
    async def __call__(self, ctx: FlowContext, payment: Payment) -> Approved:
        raise NotImplementedError


class TestOutputType:
    @pytest.mark.parametrize(
        ("fn", "expected"),
        [
            (async_input_only, Approved),
            (sync_with_context, Approved | Rejected),
            (async_with_context, list[Order]),
            (with_default, int),
            (functools.partial(add, 1), decimal.Decimal),
            (Charger(), Approved),
            (returns_awaitable, str),
            (Order, Order),
        ],
    )
    def test_annotated(self, fn, expected):
        """The annotated return type; for async functions, what awaiting gives."""
        assert expected == output_type(fn)

    @pytest.mark.parametrize("fn", [unannotated, unresolvable, generic, len, 42])
    def test_unknown(self, fn):
        """Missing, unresolvable or generic annotations give Any."""
        assert Any is output_type(fn)


class TestInputType:
    @pytest.mark.parametrize(
        ("fn", "expected"),
        [
            (async_input_only, Order),
            (sync_with_context, Order),
            (async_with_context, int),
            (with_default, Order),
            (functools.partial(add, 1), decimal.Decimal),
            (Charger(), Payment),
            (variadic, int),
        ],
    )
    def test_annotated(self, fn, expected):
        """The input parameter's annotation, after the context when there is one."""
        assert expected == input_type(fn)

    @pytest.mark.parametrize(
        "fn", [unannotated, unresolvable, generic, len, 42, lambda a, b, c: None]
    )
    def test_unknown(self, fn):
        """Missing or unresolvable annotations, or no usable signature, give Any."""
        assert Any is input_type(fn)


class TestShared:
    def test_one_per_process(self):
        """Codec.shared() returns the same codec every time."""
        assert Codec.shared() is Codec.shared()
