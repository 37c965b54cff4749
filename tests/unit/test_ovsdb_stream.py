"""The incremental decoder that splits OVSDB's undelimited stream of JSON objects."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from op_dbus.native.ovsdb import JsonStreamDecoder
from op_dbus.native.vswitch import ovsdb_set

# Strings rich in what can confuse a boundary scanner: quotes, backslashes, brackets, non-ASCII.
tricky_text = st.text(alphabet=st.sampled_from('ab"\\{}[]: é€😀\n\t'), max_size=12) | st.text(
    max_size=8
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | tricky_text
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=20,
)
messages = st.lists(st.dictionaries(tricky_text, values, max_size=5), min_size=1, max_size=6)


def encode(objects: list, separators: list[str], ensure_ascii: bool) -> tuple[bytes, list[int]]:
    """The stream, and the offset just past each object's closing bracket."""
    stream, ends = b"", []
    for obj, sep in zip(objects, separators, strict=False):
        stream += json.dumps(obj, ensure_ascii=ensure_ascii).encode()
        ends.append(len(stream))
        stream += sep.encode()
    return stream, ends


@given(
    objects=messages,
    separators=st.lists(st.sampled_from(["", "", " ", "\n", "\r\n  "]), min_size=6, max_size=6),
    ensure_ascii=st.booleans(),
    data=st.data(),
)
def test_any_split_yields_each_object_once_its_last_byte_arrives(
    objects, separators, ensure_ascii, data
) -> None:
    stream, ends = encode(objects, separators, ensure_ascii)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = JsonStreamDecoder()
    decoded = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        decoded.extend(decoder.feed(stream[start:end]))
        closed = [obj for obj, obj_end in zip(objects, ends, strict=True) if obj_end <= end]
        assert decoded == closed
    assert decoded == objects


def test_one_byte_at_a_time() -> None:
    objects = [
        {"id": 1, "result": ['x"}]{', "é\\"]},
        {"method": "echo", "params": [], "id": "echo"},
    ]
    stream = "".join(json.dumps(o, ensure_ascii=False) for o in objects).encode()
    decoder = JsonStreamDecoder()
    decoded = [value for i in range(len(stream)) for value in decoder.feed(stream[i : i + 1])]
    assert decoded == objects


def test_value_is_returned_as_soon_as_it_closes() -> None:
    decoder = JsonStreamDecoder()
    assert decoder.feed(b'{"a": [1, 2') == []
    assert decoder.feed(b']}{"b"') == [{"a": [1, 2]}]
    assert decoder.feed(b": 3}") == [{"b": 3}]


def test_whitespace_arriving_alone_inside_a_string_is_kept() -> None:
    decoder = JsonStreamDecoder()
    assert decoder.feed(b'{"a": "x') == []
    assert decoder.feed(b"   ") == []
    assert decoder.feed(b'y"}  ') == [{"a": "x   y"}]


@pytest.mark.parametrize("garbage", [b"42 ", b'"text" ', b'{"a": 1}x{}', b"{]"])
def test_garbage_raises_value_error(garbage: bytes) -> None:
    with pytest.raises(ValueError):
        JsonStreamDecoder().feed(garbage)


@pytest.mark.parametrize(
    "chunks",
    [
        [b'{"a": 1', b'x, "b": 2}'],
        [b'{"a": "x', b'\x01"}'],
        [b'{"a": tru', b"th}"],
        [b'{"a', b'": 1}]'],
    ],
)
def test_garbage_arriving_in_pieces_raises_value_error(chunks: list[bytes]) -> None:
    decoder = JsonStreamDecoder()
    with pytest.raises(ValueError):
        for chunk in chunks:
            decoder.feed(chunk)


def test_invalid_utf8_raises_value_error() -> None:
    with pytest.raises(ValueError):
        JsonStreamDecoder().feed(b'{"a": "\xff"}')


@pytest.mark.parametrize(
    ("column", "members"),
    [(["set", []], []), (["set", ["a", "b"]], ["a", "b"]), ("one", ["one"]), (7, [7])],
)
def test_ovsdb_set(column, members) -> None:
    assert ovsdb_set(column) == members
