"""The REST server's routes, requests and answers held against the installed Pyserini's own server, so they cannot
drift: on Pyserini 1.6 its pydantic models (``pyserini.server.models``: every field of Pyserini's is ours, with
the same type, default and alias) and its router's routes; on Pyserini 2.x (no models module; Anserini's REST
surface) its ``openapi.yaml``: our answers validate against its schemas and its routes and parameters are ours.
Pyserini's route files are read as text (importing them starts a search controller that downloads an index)."""
import importlib
import importlib.util
import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from pyserini_hypencoder.server import models as ours

MODELS_16 = ("SearchParams", "QueryInfo", "Candidate", "Hits", "IndexStatus", "IndexSetting")


def _pyserini_server_dir() -> Path:
    spec = importlib.util.find_spec("pyserini")
    assert spec is not None and spec.submodule_search_locations, "Pyserini is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "server"


def _line() -> str:
    server = _pyserini_server_dir()
    if (server / "models.py").is_file():
        return "1.6"
    if (server / "rest" / "openapi.yaml").is_file():
        return "2.x"
    pytest.fail(f"{server}: neither models.py (Pyserini 1.6) nor rest/openapi.yaml (2.x); Pyserini's server changed "
                f"shape: update pyserini_hypencoder/server/models.py and this test")


def _our_routes():
    from types import SimpleNamespace
    from pyserini_hypencoder.server.rest import create_app
    app = create_app(SimpleNamespace()).app
    return {(method, route.path.replace(":path", "")) for route in app.routes
            for method in getattr(route, "methods", ())}


def _same_type(theirs, mine) -> bool:
    """Equal annotations, a Pyserini model matching ours of the same name (recursively)."""
    if isinstance(theirs, type) and issubclass(theirs, BaseModel):
        return isinstance(mine, type) and issubclass(mine, BaseModel) and theirs.__name__ == mine.__name__ and \
            not _field_differences(theirs, mine)
    if typing.get_origin(theirs) is not None:
        return typing.get_origin(theirs) == typing.get_origin(mine) and len(typing.get_args(theirs)) == \
            len(typing.get_args(mine)) and all(_same_type(a, b) for a, b in zip(typing.get_args(theirs),
                                                                                typing.get_args(mine)))
    return theirs == mine


def _field_differences(theirs, mine):
    out = []
    for name, field in theirs.model_fields.items():
        if name not in mine.model_fields:
            out.append(f"{theirs.__name__}.{name} missing")
            continue
        other = mine.model_fields[name]
        if not _same_type(field.annotation, other.annotation):
            out.append(f"{theirs.__name__}.{name}: {field.annotation} != {other.annotation}")
        if field.default != other.default or field.alias != other.alias or \
                field.is_required() != other.is_required():
            out.append(f"{theirs.__name__}.{name}: default/alias/required differ")
    return out


@pytest.mark.java   # pyserini.server.models imports Pyserini's Lucene searchers (the JVM)
def test_models_and_routes_are_pyserinis():
    line = _line()
    server = _pyserini_server_dir()
    routes = _our_routes()
    if line == "1.6":
        theirs = importlib.import_module("pyserini.server.models")
        problems = [p for name in MODELS_16 for p in _field_differences(getattr(theirs, name), getattr(ours, name))]
        assert not problems, problems
        source = (server / "rest" / "routes" / "indexes.py").read_text(encoding="utf-8")
        prefix = re.search(r"APIRouter\(prefix=['\"]([^'\"]+)", source).group(1)
        declared = {(m.upper(), "/v1" + prefix + p) for m, p in re.findall(r"@router\.(\w+)\(['\"]([^'\"]*)", source)}
        assert declared and declared <= routes, declared - routes
    else:
        yaml = pytest.importorskip("yaml")
        jsonschema = pytest.importorskip("jsonschema")
        spec = yaml.safe_load((server / "rest" / "openapi.yaml").read_text(encoding="utf-8"))
        base = spec["servers"][0]["url"]
        declared = {(m.upper(), base + p) for p, ops in spec["paths"].items() for m in ops}
        assert declared <= routes, declared - routes
        components = spec["components"]

        def check(instance, name):
            schema = {"$ref": f"#/components/schemas/{name}", "components": components}
            jsonschema.validate(instance, schema)
        search = ours.V1SearchResponse(index="i", query=ours.V1Query(text="q"), candidates=[
            ours.V1Candidate(docid="d", score=1.5, rank=1, doc={"title": "t", "text": "x"}),
            ours.V1Candidate(docid="e", score=1.0, rank=2, doc="raw")])
        check(search.model_dump(mode="json"), "SearchResponse")
        check(ours.V1DocumentResponse(index="i", docid="d", doc={"text": "x"}).model_dump(mode="json"),
              "DocumentResponse")
        check(ours.ErrorResponse(detail="bad", error="bad").model_dump(mode="json"), "ErrorResponse")
        for name, model in (("SearchResponse", ours.V1SearchResponse), ("DocumentResponse", ours.V1DocumentResponse),
                            ("Candidate", ours.V1Candidate), ("Query", ours.V1Query)):
            required = set(components["schemas"][name].get("required", ()))
            assert required <= set(model.model_fields), (name, required - set(model.model_fields))
        params = {p["name"] for ops in spec["paths"].values() for op in ops.values() for p in op.get("parameters", ())
                  if p.get("in") == "query"}
        from pyserini_hypencoder.server.rest import V1_PARAMS
        assert params <= V1_PARAMS, params - V1_PARAMS


def test_our_models_import_without_pyserini_or_torch():
    """Serving needs no JVM: the models module is pydantic only."""
    import subprocess
    import sys
    code = ("import sys; import pyserini_hypencoder.server.models, pyserini_hypencoder.server.batcher; "
            "bad = [m for m in ('pyserini', 'jnius', 'torch') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "PYSERINI_HYPENCODER_JAVA": "off"})
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_search_answers_built_by_hand_are_the_models_dumps():
    """The search routes build their JSON without pydantic (speed); it must be what the models dump."""
    import asyncio
    from types import SimpleNamespace
    from pyserini_hypencoder.server.rest import create_app

    async def hits(index, query, k, params):
        return [("d1", 1.25), ("d2", -0.5)]

    async def off_loop(function, *args):
        return function(*args)
    service = SimpleNamespace(
        index=lambda name: None, check_query=lambda q: q, encoder_name="default", stopping=False, hits=hits,
        off_loop=off_loop, texts=lambda index, docids: [f"text of {d}" for d in docids],
        payloads=lambda index, docids, parse, length: [{"text": d} for d in docids])
    app = create_app(service).app
    routes = {route.path: route.endpoint for route in app.routes if hasattr(route, "endpoint")}
    body = asyncio.run(routes["/v1/indexes/{index}/search"]("i", ours.SearchParams(query="q", qid="7"))).body
    dumped = ours.Hits(query=ours.QueryInfo(qid="7", query_txt="q"), candidates=[
        ours.Candidate(docid="d1", score=1.25, document_txt="text of d1"),
        ours.Candidate(docid="d2", score=-0.5, document_txt="text of d2")]).model_dump(mode="json")
    assert __import__("json").loads(body) == dumped
    request = SimpleNamespace(query_params={"query": "q", "hits": "2"})
    body = asyncio.run(routes["/v1/{index}/search"](request, "i", query="q", hits="2")).body
    dumped = ours.V1SearchResponse(index="i", query=ours.V1Query(text="q"), candidates=[
        ours.V1Candidate(docid="d1", score=1.25, rank=1, doc={"text": "d1"}),
        ours.V1Candidate(docid="d2", score=-0.5, rank=2, doc={"text": "d2"})]).model_dump(mode="json")
    assert __import__("json").loads(body) == dumped
