"""Bounded fuzzing of an app's OpenAPI schema with Hypothesis: every operation gets path
parameters of any text, and bodies that follow the schema (:func:`from_schema`), arbitrary JSON
with hostile strings (NUL, lone surrogates, markup), or bytes that are not UTF-8; ``check``
asserts on every response."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import hypothesis.strategies as st
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

#: strings that broke or could break something before: NUL, a lone surrogate, markup, RTL
#: override, a long run
HOSTILE = st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "x\udfff", "<script>alert(1)</script>", "\u202e", "💥" * 50, " "]
)
TEXT = st.one_of(st.text(max_size=40), HOSTILE)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)


def from_schema(schema: dict, root: dict) -> st.SearchStrategy[Any]:
    """Values that follow a JSON schema as FastAPI writes them (``$ref`` into ``root``'s
    components, ``anyOf``, ``enum``, objects, arrays, strings, numbers), strings at their length
    limits and hostile ones among them."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return from_schema(root["components"]["schemas"][name], root)
    if "anyOf" in schema or "oneOf" in schema:
        return st.one_of([from_schema(s, root) for s in schema.get("anyOf", schema.get("oneOf"))])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        properties = {k: from_schema(v, root) for k, v in schema.get("properties", {}).items()}
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: v for k, v in properties.items() if k in required},
            optional={k: v for k, v in properties.items() if k not in required},
        )
    if kind == "array":
        low, high = schema.get("minItems", 0), schema.get("maxItems", 5)
        return st.lists(from_schema(schema.get("items", {}), root), min_size=low, max_size=high)
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        limit = [] if high is None else [st.text(min_size=high, max_size=high + 1)]
        return st.one_of(st.text(min_size=low, max_size=max(low, 40)), HOSTILE, *limit)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return JSON


def operations(schema: dict) -> list[tuple[str, str, dict]]:
    """``(method, path template, operation)`` for every operation in an OpenAPI schema."""
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]


def _path(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: quote(values[m.group(1)], safe=""), template)


def _encode(value: Any, ascii_only: bool) -> bytes:
    """JSON bytes; without ``ascii_only`` a lone surrogate becomes bytes that are not UTF-8."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def requests(
    schema: dict, skip: frozenset[tuple[str, str]], known: dict[str, list[str]]
) -> st.SearchStrategy[tuple[str, str, bytes | None, str]]:
    """``(method, url, body, content type)`` for any operation of ``schema`` but ``skip``
    (``(method, path template)`` pairs); path parameters often take a ``known`` value."""
    cases = []
    for method, template, operation in operations(schema):
        if (method, template) in skip:
            continue
        names = re.findall(r"\{(\w+)\}", template)
        params = st.fixed_dictionaries(
            {
                n: st.one_of(
                    st.sampled_from(known.get(n, ["1"])),
                    st.integers(-2, 30).map(str),
                    st.integers(-(10**20), 10**20).map(str),
                    st.text(min_size=1),
                )
                for n in names
            }
        )
        urls = params.map(lambda values, t=template: _path(t, values))
        body_schema = (
            operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        ).get("schema")
        if body_schema is None:
            cases.append(st.tuples(st.just(method), urls, st.none(), st.just("")))
            continue
        documented = from_schema(body_schema, schema)
        values = st.one_of(documented, documented, JSON)
        bodies = st.one_of(
            st.builds(_encode, values, st.booleans()),
            st.binary(max_size=64),
        )
        kinds = st.sampled_from(["application/json", "application/json", "text/plain"])
        cases.append(st.tuples(st.just(method), urls, bodies, kinds))
    # the operation first, uniformly (one_of would favour the first few)
    return st.integers(0, len(cases) - 1).flatmap(lambda i: cases[i])


def fuzz(
    client: TestClient,
    schema: dict,
    check: Callable[[str, str, Any], None],
    examples: int = 300,
    skip: frozenset[tuple[str, str]] = frozenset(),
    known: dict[str, list[str]] | None = None,
) -> dict[int, int]:
    """Send ``examples`` generated requests (reproducibly: derandomized) to the operations of
    ``schema`` but ``skip``, and ``check(method, url, response)`` each; path parameters often
    take a ``known`` value (name -> values). Returns how many responses had each status."""
    statuses: dict[int, int] = {}

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests(schema, skip, known or {}))
    def run(case: tuple[str, str, bytes | None, str]) -> None:
        method, url, body, content_type = case
        headers = {"content-type": content_type} if content_type else {}
        response = client.request(method, url, content=body, headers=headers)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        check(method, url, response)

    run()
    return statuses
