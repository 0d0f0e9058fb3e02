"""Pyserini's REST API over Hypencoder indexes: the routes, requests and answers of ``python -m
pyserini.server.rest``, both lines' (docs/serving.md).

    python -m pyserini_hypencoder.server.rest --index scifact=indexes/scifact [--index NAME=DIR ...]
        [--encoder default] [--corpus NAME=FILE | --lucene-index NAME=DIR] [--host 127.0.0.1] [--port 8081]
        [--strategy exact|graph|ivf|surrogate ...] [--batch-size 32] [--batch-wait-ms 2] [--max-queue 256]

Pyserini 1.6's routes: ``POST /v1/indexes/{index}/search`` (``SearchParams`` -> ``Hits``), ``GET
/v1/indexes/{index}/documents/{docid}``, ``GET /v1/indexes/{index}/status``, ``GET /v1/indexes/?index_type=``,
``GET|POST /v1/indexes/{index}/settings``.  Pyserini 2.x's (Anserini's): ``GET /v1/{index}/search?query=&hits=``
and ``GET /v1/{index}/doc/{docid}``.  Also ``GET /v1/health``.  A strategy parameter (``candidates=2000``, ...)
goes in the search body (1.6) or the query string (2.x).  Every error is JSON ``{"detail": ..., "error": ...}``.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional

from fastapi import Body, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..cli import ArgumentParser, run_cli
from .batcher import Overloaded
from .models import Health, Hits, IndexSetting, IndexStatus, SearchParams, V1DocumentResponse, V1SearchResponse
from .service import BadRequest, NotFound, RequestTimeout, Service

logger = logging.getLogger(__name__)

NAME = "Pyserini-Hypencoder API"
VERSION = "v1"
MAX_BODY = 1 << 20    # bytes of a request body; a query is cut to the encoder's max length anyway
RETRY_AFTER = "1"     # seconds, with a 503
V1_PARAMS = frozenset({"query", "hits", "parse", "max_doc_length", "k1", "b"})   # 2.x's; any other: the strategy's


class BodyTooLarge(RuntimeError):
    pass


def _error(status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"detail": message, "error": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        if err.get("type") == "json_invalid":
            error = (err.get("ctx") or {}).get("error", "")
            where = err.get("loc", ("", "?"))[-1]
            parts.append(f"malformed JSON at character {where}" + (f": {error}" if error else ""))
            continue
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


class _LimitBody:
    """ASGI wrapper: a request body over ``limit`` bytes is a 413 (by its Content-Length, or while it streams)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            response = _error(413, f"request body over {self.limit} bytes")
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(f"request body over {self.limit} bytes")
            return message
        return await self.app(scope, limited, send)


def create_app(service: Service, *, max_body: int = MAX_BODY):
    """The ASGI app: FastAPI routes over ``service`` (whose batches the caller runs), inside a body-size limit."""
    app = FastAPI(title=NAME, version=VERSION, description="Pyserini's REST API over Hypencoder indexes")
    app.state.service = service

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return _error(exc.status_code, detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):
        return _error(422, _validation_message(exc))

    def answer(status: int, headers: Optional[dict] = None):
        async def handler(request, exc):
            return _error(status, str(exc.args[0] if exc.args else exc), headers)
        return handler
    # the errors a client caused, each with its status (a 503 says when to come back)
    for error, status, headers in ((BadRequest, 400, None), (NotFound, 404, None), (BodyTooLarge, 413, None),
                                   (Overloaded, 503, {"Retry-After": RETRY_AFTER}), (RequestTimeout, 504, None)):
        app.add_exception_handler(error, answer(status, headers))

    @app.exception_handler(Exception)
    async def _fault(request, exc):
        logger.exception("error answering %s %s", request.method, request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}")

    def hits_for(*args):
        return service.hits(*args)

    def off_loop(*args):
        return service.off_loop(*args)

    # -- Pyserini 1.6 ----------------------------------------------------------------------------------------
    @app.get("/")
    async def root():
        return {"name": NAME, "version": VERSION, "description": "Pyserini's REST API over Hypencoder indexes",
                "documentation": "/docs", "indexes": list(service.indexes)}

    @app.get(f"/{VERSION}/health", response_model=Health)
    async def health():
        body = {"status": "stopping" if service.stopping else "ok", "indexes": list(service.indexes),
                **service.batcher.stats()}
        return JSONResponse(body, status_code=503 if service.stopping else 200,
                            headers={"Retry-After": RETRY_AFTER} if service.stopping else None)

    @app.post(f"/{VERSION}/indexes/{{index}}/search", response_model=Hits)
    async def search_index(index: str = Path(..., description="Index name"), params: SearchParams = Body(...)):
        service.index(index)
        query, qid = params.query, params.qid
        if isinstance(query, dict):
            unknown = sorted(set(query) - {"query_txt", "qid"})
            if unknown:
                raise BadRequest(f"a Hypencoder index searches text: query {unknown[0]!r} is not supported")
            qid = str(query.get("qid") or qid)
            query = query.get("query_txt")
        if params.encoder not in (None, "", service.encoder_name):
            raise BadRequest(f"this server encodes queries with {service.encoder_name!r} (--encoder), "
                             f"not {params.encoder!r}")
        for name in ("ef_search", "query_generator", "instruction_config"):
            if getattr(params, name) not in (None, ""):
                raise BadRequest(f"{name} does not apply to a Hypencoder index")
        query = service.check_query(query)
        found = await hits_for(index, query, params.hits, dict(params.model_extra or {}))
        texts = await off_loop(service.texts, index, [docid for docid, _ in found])
        # built as Hits would dump it (the test holds the two together), without validating it again
        return JSONResponse({"query": {"qid": qid, "query_txt": query, "query_img_path": None,
                                       "query_modality": "text", "fp16": False},
                             "candidates": [{"docid": docid, "score": score, "document_txt": text,
                                             "document_img_path": None, "encoded_img": None}
                                            for (docid, score), text in zip(found, texts)]})

    @app.get(f"/{VERSION}/indexes/{{index}}/documents/{{docid:path}}", response_model=Dict[str, str])
    async def get_document(index: str, docid: str):
        service.index(index)
        return await off_loop(service.document_fields, index, docid)

    @app.get(f"/{VERSION}/indexes/{{index}}/status", response_model=IndexStatus)
    async def get_index_status(index: str):
        return await off_loop(lambda: service.index(index).status())

    @app.get(f"/{VERSION}/indexes/", response_model=list[str])
    async def list_indexes(index_type: Optional[str] = Query(None, description="hypencoder (or faiss); "
                                                                               "Pyserini's other types list none")):
        return service.list_indexes(index_type)

    @app.get(f"/{VERSION}/indexes/{{index}}/settings", response_model=IndexSetting)
    async def get_index_settings(index: str):
        service.index(index)
        return IndexSetting(encoder=service.encoder_name)

    @app.post(f"/{VERSION}/indexes/{{index}}/settings", response_model=Dict[str, str])
    async def update_index_settings(index: str, params: IndexSetting = Body(...)):
        service.index(index)
        if params.ef_search is not None or params.query_generator is not None:
            raise BadRequest("efSearch and queryGenerator are not settings of a Hypencoder index")
        if params.encoder not in (None, service.encoder_name):
            raise BadRequest(f"the encoder is fixed when the server starts (--encoder {service.encoder_name})")
        return {"status": "success"}

    # -- Pyserini 2.x (Anserini's surface) -------------------------------------------------------------------
    @app.get(f"/{VERSION}/{{index}}/search", response_model=V1SearchResponse)
    async def search_v1(request: Request, index: str, query: Optional[str] = None, hits: Optional[str] = None,
                        parse: Optional[str] = None, max_doc_length: Optional[str] = None):
        service.index(index)
        if query is None or not query.strip():
            raise BadRequest("Parameter 'query' is required")
        k = _int_param(hits, "hits", 10)
        parse_flag = _bool_param(parse, "parse")
        length = _int_param(max_doc_length, "max_doc_length", None)
        if length is not None and not parse_flag:
            raise BadRequest("Parameter 'max_doc_length' requires parse=true")
        if any(request.query_params.get(name) not in (None, "") for name in ("k1", "b")):
            raise BadRequest("k1 and b are BM25 parameters; a Hypencoder index has none")
        params = {name: value for name, value in request.query_params.items() if name not in V1_PARAMS}
        found = await hits_for(index, query, k, params)
        docs = await off_loop(service.payloads, index, [docid for docid, _ in found], parse_flag, length)
        return JSONResponse({"api": VERSION, "index": index, "query": {"text": query},
                             "candidates": [{"docid": docid, "score": score, "rank": rank, "doc": doc}
                                            for rank, ((docid, score), doc) in enumerate(zip(found, docs), 1)]})

    @app.get(f"/{VERSION}/{{index}}/doc/{{docid:path}}", response_model=V1DocumentResponse)
    async def get_document_v1(index: str, docid: str, parse: Optional[str] = None,
                              max_doc_length: Optional[str] = None):
        service.index(index)
        parse_flag = _bool_param(parse, "parse")
        length = _int_param(max_doc_length, "max_doc_length", None)
        if length is not None and not parse_flag:
            raise BadRequest("Parameter 'max_doc_length' requires parse=true")
        doc = await off_loop(service.document_payload, index, docid, parse_flag, length)
        return V1DocumentResponse(index=index, docid=docid, doc=doc)

    return _LimitBody(app, max_body)


def _int_param(raw: Optional[str], name: str, default):
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"Parameter '{name}' must be an integer") from None
    if value <= 0:
        raise BadRequest(f"Parameter '{name}' must be positive")
    return value


def _bool_param(raw: Optional[str], name: str) -> bool:
    if raw is None:
        return True
    if raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise BadRequest(f"Parameter '{name}' must be 'true' or 'false'")


def build_parser() -> ArgumentParser:
    from ._cli import define_server_args
    parser = ArgumentParser(prog="python -m pyserini_hypencoder.server.rest",
                            description="Serve Hypencoder indexes with Pyserini's REST API (docs/serving.md).")
    define_server_args(parser, port=8081)
    return parser


def main(argv=None) -> int:
    from ._cli import main_for, serve
    return main_for(build_parser, lambda service, args: serve(service, create_app(service), args, what="REST"),
                    argv)


if __name__ == "__main__":
    raise SystemExit(run_cli(main, prog="python -m pyserini_hypencoder.server.rest"))
