"""The JSON depth limit: deep documents get a typed error before any decoder sees them."""

from __future__ import annotations

import pytest

from proto.errors import ErrorCode
from shared.json_depth import JsonTooDeepError, check_json_depth, json_depth


def test_json_nested_past_the_limit_is_refused_with_a_typed_error() -> None:
    with pytest.raises(JsonTooDeepError) as deep:
        check_json_depth(b"[" * 1000 + b"]" * 1000, 64)
    assert deep.value.to_wire().code is ErrorCode.BAD_REQUEST and deep.value.limit == 64


def test_json_within_the_limit_passes_and_brackets_in_strings_do_not_count() -> None:
    check_json_depth(b'{"a": [[[1]]], "b": {"c": [2, 3]}}', 4)
    check_json_depth(b'{"text": "' + b"[" * 500 + b'\\"{{{"}', 2)
    assert json_depth(b'[{"x": "]]]"}, [[]]]') == 3
    check_json_depth(b"[" * 100 + b"]" * 100, 0)  # 0: no limit
