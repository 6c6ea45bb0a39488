"""The raw content of rating rejects: the plain encoding of few rows gives the bytes polars gives."""

import pyarrow as pa

from icdsl.rating.run import _json_rows, _json_rows_polars

_STRINGS = ['a"\\\n\x01\x7fé\u2028\t\b\f\r\x1f', "", None, "IC-0001", "😀", "<>&'"]


def _table() -> pa.Table:
    n = len(_STRINGS)
    stamps = {
        f"t_{unit}_{tz}": pa.array(
            [None if k == 2 else 1_700_000_000_123_456_789 // scale + k for k in range(n)],
            pa.timestamp(unit, tz),
        )
        for unit, scale in (("ms", 10**6), ("us", 10**3), ("ns", 1))
        for tz in (None, "UTC")
    }
    return pa.table(
        {
            "s": _STRINGS,
            "d": pa.array(_STRINGS).dictionary_encode(),
            "i": pa.array([1, -2, None, 2**62, 0, 5], pa.int64()),
            "u": pa.array([1, 2, 3, None, 255, 0], pa.uint8()),
            "b": [True, False, None, True, True, False],
            "nothing": pa.nulls(n),
            'k"ey é': ["a"] * n,
            **stamps,
        }
    )


def test_plain_rows_are_the_bytes_of_polars_for_every_plain_type():
    table = _table()
    assert _json_rows(table).equals(_json_rows_polars(table))
    for name in table.column_names:
        assert _json_rows(table.select([name])).equals(_json_rows_polars(table.select([name])))
    assert _json_rows(table.slice(0, 0)).to_pylist() == []


def test_other_types_go_to_polars():
    table = pa.table(
        {"x": pa.array([1.5, 1e20, None]), "tz": pa.array([0, 1, None], pa.timestamp("us", "Europe/Paris"))}
    )
    assert _json_rows(table).to_pylist() == [
        '{"x":1.5,"tz":"1970-01-01 01:00:00.000000+01:00"}',
        '{"x":1e+20,"tz":"1970-01-01 01:00:00.000001+01:00"}',
        '{"x":null,"tz":null}',
    ]
