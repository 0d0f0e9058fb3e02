"""Serving Hypencoder indexes the way Pyserini serves its own (docs/serving.md).

* ``python -m pyserini_hypencoder.server.rest``: Pyserini's REST routes, both lines' (1.6's
  ``POST /v1/indexes/{index}/search`` and 2.x's Anserini-aligned ``GET /v1/{index}/search``);
* ``python -m pyserini_hypencoder.server.mcp``: Pyserini's MCP tools (search, get_document, list_indexes,
  get_index) over stdio or streamable HTTP.

Both put every query through one :class:`~.batcher.Batcher`: queries that arrive together are encoded and scored
as one ``batch_search`` on the main thread while the network event loop runs in another thread, so it never
waits on model work.  Nothing here imports Pyserini's own server (which starts Pyserini's JVM).
"""
