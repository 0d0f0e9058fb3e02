"""Request and response models of both Pyserini REST lines, declared once (a test holds them against
Pyserini's own: ``pyserini.server.models`` on 1.6, ``pyserini/server/rest/openapi.yaml`` on 2.x).

Pyserini 1.6 (``POST /v1/indexes/{index}/search``): :class:`SearchParams` in, :class:`Hits` out; documents as
``dict[str, str]``; :class:`IndexStatus`, :class:`IndexSetting`.  Pyserini 2.x (``GET /v1/{index}/search``,
Anserini's surface): :class:`V1SearchResponse` and :class:`V1DocumentResponse`.  Errors carry the message as
``detail`` (FastAPI's, what 1.6 answers) and as ``error`` (what 2.x answers), so clients of either line read it.
Importing this module needs pydantic only (no Pyserini, no JVM, no torch).
"""
from __future__ import annotations

from typing import Any, Dict

from pydantic import BaseModel, ConfigDict, Field, field_validator


# -- Pyserini 1.6 ---------------------------------------------------------------------------------------------
class SearchParams(BaseModel):
    """Pyserini's search body; any other key is a parameter of the index's search strategy (``candidates``, ...),
    checked against ``strategies.STRATEGIES`` (an unknown one is a 400)."""

    model_config = ConfigDict(extra="allow")

    query: str | Dict[str, Any]
    hits: int = 10
    qid: str = ''
    ef_search: int | None = None
    encoder: str | None = None
    query_generator: str | None = None
    instruction_config: str | None = None

    @field_validator("hits", mode="before")
    @classmethod
    def _no_bool(cls, value):
        if isinstance(value, bool):   # pydantic would take true as 1
            raise ValueError("hits must be an integer, not a boolean")
        return value


class QueryInfo(BaseModel):
    qid: str
    query_txt: str
    query_img_path: str | None = None
    query_modality: str | None = "text"
    fp16: bool | None = False


class Candidate(BaseModel):
    docid: str
    score: float
    document_txt: str
    document_img_path: str | None = None
    encoded_img: str | None = None


class Hits(BaseModel):
    query: QueryInfo
    candidates: list[Candidate]


class IndexStatus(BaseModel):
    downloaded: bool
    size_bytes: str
    # beyond Pyserini's two fields: what a Hypencoder index is
    path: str | None = None
    num_docs: int | None = None
    dimension: int | None = None
    strategy: str | None = None
    search_params: Dict[str, Any] | None = None
    encoder: str | None = None
    text_source: str | None = None


class IndexSetting(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    ef_search: str = Field(None, alias="efSearch")
    encoder: str | None = None
    query_generator: str = Field(None, alias="queryGenerator")


# -- Pyserini 2.x (Anserini's REST surface) -------------------------------------------------------------------
class V1Query(BaseModel):
    text: str


class V1Candidate(BaseModel):
    docid: str
    score: float
    rank: int
    doc: Any = None


class V1SearchResponse(BaseModel):
    api: str = "v1"
    index: str
    query: V1Query
    candidates: list[V1Candidate]


class V1DocumentResponse(BaseModel):
    api: str = "v1"
    index: str
    docid: str
    doc: Any = None


class ErrorResponse(BaseModel):
    detail: str
    error: str


class Health(BaseModel):
    status: str
    indexes: list[str]
    queued: int
    in_flight: int
    batches: int
    queries: int
    mean_batch: float
    max_batch: int
    max_queue: int
