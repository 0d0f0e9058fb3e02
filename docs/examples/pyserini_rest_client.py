"""A client of Pyserini's REST server (``python -m pyserini.server.rest``), nothing Hypencoder-specific in it:
the same script searches a Pyserini server and ``python -m pyserini_hypencoder.server.rest`` (docs/serving.md).

    python docs/examples/pyserini_rest_client.py http://127.0.0.1:8081 INDEX "a query"

It uses both lines' routes: Pyserini 1.6's ``POST /v1/indexes/{index}/search`` and
``GET /v1/indexes/{index}/documents/{docid}``, and Pyserini 2.x's ``GET /v1/{index}/search``.
"""
import sys

import requests


def search_16(base, index, query, hits=3):
    response = requests.post(f"{base}/v1/indexes/{index}/search", json={"query": query, "hits": hits, "qid": "q1"},
                             timeout=30)
    response.raise_for_status()
    return response.json()          # {"query": {"qid", "query_txt", ...}, "candidates": [{"docid", "score", ...}]}


def document_16(base, index, docid):
    response = requests.get(f"{base}/v1/indexes/{index}/documents/{docid}", timeout=30)
    response.raise_for_status()
    return response.json()          # the stored record's fields


def search_2x(base, index, query, hits=3):
    response = requests.get(f"{base}/v1/{index}/search", params={"query": query, "hits": hits}, timeout=30)
    response.raise_for_status()
    return response.json()          # {"api", "index", "query": {"text"}, "candidates": [{"docid", "score", "rank", "doc"}]}


def main(base, index, query):
    hits = search_16(base, index, query)
    print(f"1.6 route: {len(hits['candidates'])} hits for {hits['query']['query_txt']!r}")
    for c in hits["candidates"]:
        print(f"  {c['docid']:>12} {c['score']:.6f} {c['document_txt'][:60]}")
    top = hits["candidates"][0]["docid"]
    doc = document_16(base, index, top)
    print(f"document {top}: {', '.join(sorted(doc))}")
    hits = search_2x(base, index, query)
    print(f"2.x route: {len(hits['candidates'])} hits, ranks {[c['rank'] for c in hits['candidates']]}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
