"""Pyserini's MCP tools over Hypencoder indexes, with fastmcp (docs/serving.md).

    python -m pyserini_hypencoder.server.mcp --index scifact=indexes/scifact [--transport stdio|http] [--port 8000]

Tools, shaped like ``python -m pyserini.server.mcp``'s: ``search`` (query, index, hits, parse; 1.6's spellings
``index_name`` and ``k`` too; strategy parameters in ``search_params``) answers Pyserini's list: ``"Query Results
for: ..."``, then per hit ``"DocID: ... | Score: ..."`` and its document; ``get_document`` (docid, index, parse);
``list_indexes`` (index_type); ``get_index`` (index_name: size, documents, strategy, text source).  Queries go
through the same batcher as the REST server's (the main thread runs the batches; the MCP transport runs on a
thread of its own).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List, Optional

from ..cli import ArgumentParser, run_cli
from .batcher import Overloaded
from .service import BadRequest, NotFound, RequestTimeout, Service

logger = logging.getLogger(__name__)


def create_mcp(service: Service):
    """A FastMCP server whose tools answer from ``service``."""
    from fastmcp import FastMCP
    from fastmcp.exceptions import ToolError

    mcp = FastMCP("pyserini-hypencoder", instructions="Search Hypencoder indexes (q-net retrieval). "
                  f"Indexes: {', '.join(service.indexes)}.")
    default_index = next(iter(service.indexes))

    def _index(index: Optional[str], index_name: Optional[str]) -> str:
        name = index or index_name or default_index
        try:
            service.index(name)
        except NotFound as exc:
            raise ToolError(str(exc.args[0])) from None
        return name

    async def _call(coroutine):
        try:
            return await coroutine
        except (BadRequest, NotFound, Overloaded, RequestTimeout) as exc:
            raise ToolError(str(exc.args[0] if exc.args else exc)) from None

    @mcp.tool(description=f"Search a Hypencoder index and return the top hits: a line 'Query Results for: ...', then "
                          f"for each hit 'DocID: ... | Score: ...' and its document. index: one of "
                          f"{', '.join(service.indexes)} (default {default_index}); hits: how many (1 to "
                          f"{service.max_hits}); parse: the document's fields (true) or its stored record (false); "
                          f"search_params: parameters of the index's search strategy. index_name and k are "
                          f"Pyserini 1.6's names for index and hits.")
    async def search(query: str | Dict[str, Any], index: Optional[str] = None, hits: int = 10, parse: bool = True,
                     search_params: Optional[Dict[str, Any]] = None, index_name: Optional[str] = None,
                     k: Optional[int] = None) -> List[Any]:
        name = _index(index, index_name)
        if isinstance(query, dict):
            query = query.get("query_txt")
        count = k if k is not None else hits

        async def run():
            found = await service.hits(name, service.check_query(query), count, search_params or {})
            docs = await service.off_loop(service.payloads, name, [d for d, _ in found], parse, None)
            return found, docs
        found, docs = await _call(run())
        out: List[Any] = [f"Query Results for: {query}"]
        for (docid, score), doc in zip(found, docs):
            out.append(f"DocID: {docid} | Score: {score}")
            if doc is not None:
                out.append(doc)
        return out

    @mcp.tool(description="Retrieve a document of an index by its id: its fields (parse true) or stored record.")
    async def get_document(docid: str, index: Optional[str] = None, parse: bool = True,
                           index_name: Optional[str] = None) -> List[Any]:
        name = _index(index, index_name)
        return [await _call(service.off_loop(service.document_payload, name, docid, parse, None))]

    @mcp.tool(description="List the indexes of a type this server searches: hypencoder (or faiss) lists them "
                          "all; Pyserini's other types (tf, lucene_flat, lucene_hnsw, impact) list none.")
    def list_indexes(index_type: str = "hypencoder") -> List[str]:
        try:
            return service.list_indexes(index_type)
        except BadRequest as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool(description="What an index is: size, number of documents, dimension, search strategy and its "
                          "parameters, encoder, text source.")
    async def get_index(index_name: str) -> Dict[str, Any]:
        name = _index(index_name, None)
        return await service.off_loop(lambda: service.index(name).status())

    return mcp


def build_parser() -> ArgumentParser:
    from ._cli import define_server_args
    parser = ArgumentParser(prog="python -m pyserini_hypencoder.server.mcp",
                            description="Serve Hypencoder indexes as Pyserini's MCP tools (docs/serving.md).")
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio",
                        help="stdio (default) or streamable HTTP at /mcp")
    define_server_args(parser, port=8000)
    return parser


def start(service: Service, args) -> int:
    from ._cli import run_with_batches, serve
    mcp = create_mcp(service)
    if args.transport == "http":
        return serve(service, mcp.http_app(path="/mcp", transport="http"), args, what="MCP")
    # stdio: the transport ends when its input does; a signal stops after the queued queries are answered
    stopped = threading.Event()
    thread = threading.Thread(target=lambda: mcp.run(transport="stdio", show_banner=False), name="mcp-stdio",
                              daemon=True)
    code = run_with_batches(service, thread, what="MCP", started=lambda: True, address=lambda: "stdio",
                            stop=stopped.set, alive=lambda: thread.is_alive() and not stopped.is_set())
    if stopped.is_set():
        time.sleep(0.2)   # the last answers reach the transport's writer
    return code


def main(argv=None) -> int:
    from ._cli import main_for
    return main_for(build_parser, start, argv)


if __name__ == "__main__":
    raise SystemExit(run_cli(main, prog="python -m pyserini_hypencoder.server.mcp"))
