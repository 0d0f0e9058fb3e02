"""Encoding a corpus into an index directory: chunks of documents, sorted by length within a chunk (less
padding), each completed chunk written to the writer's temporary directory so an interrupted run resumes."""
from __future__ import annotations

import logging
from itertools import islice, tee
from pathlib import Path
from typing import Callable, Iterable, Optional, Tuple

from tqdm import tqdm

from ..encoders import ChunkEncoder, HypencoderDocumentEncoder
from ..formats.corpus import JsonlCorpus
from ..index import IndexWriter, check_target, export_parquet
from ._shard import Shard, check_shard

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 4096
PARQUET_FILE = "vectors.parquet"


def _chunks(records: Iterable[Tuple[str, str]], size: int):
    records = iter(records)
    while chunk := list(islice(records, size)):
        yield chunk


def encoding_meta(encoder: HypencoderDocumentEncoder, encoder_name: str) -> dict:
    """The encoder part of meta.json: what the search side checks against."""
    model = encoder.model
    return {"encoder": str(encoder_name), "encoder_fingerprint": encoder.fingerprint,
            "document_fingerprint": encoder.document_fingerprint, "pooling": model.pooling,
            "max_length": int(encoder.max_length), "bf16": bool(encoder.bf16),
            "vector_dimensions": list(model.spec.vector_dimensions)}


def encode_corpus(corpus: JsonlCorpus, encoder: HypencoderDocumentEncoder, out_dir, *, encoder_name: str,
                  batch_size: int = 64, chunk_size: int = DEFAULT_CHUNK_SIZE, storage_dtype: str = "float32",
                  shard_id: int = 0, shard_num: int = 1, overwrite: bool = False, parquet: bool = False,
                  progress: bool = True, encode_chunks: Optional[Callable] = None) -> Path:
    """Encode documents [start, stop) of the shard into the index directory ``out_dir``.

    Resumable: rerunning the same command after an interruption continues from the last completed chunk and
    gives the same index as an uninterrupted run (same chunks, same batches).  ``encode_chunks(texts_of_chunks,
    progress)`` -> their vectors in order replaces the local chunk encoder (``encode --ray``: a pool of Ray actors,
    :class:`~pyserini_hypencoder.distributed.RayChunkEncoder`).
    """
    out_dir = Path(out_dir).expanduser()
    check_shard(shard_id, shard_num)
    if chunk_size < 1 or batch_size < 1:
        raise ValueError("chunk and batch sizes must be positive")
    check_target(out_dir, overwrite=overwrite)
    total = corpus.size if corpus.size is not None else corpus.scan()
    shard = Shard(shard_id, shard_num, total)
    meta = encoding_meta(encoder, encoder_name)
    meta["corpus"] = corpus.settings()
    if shard_num > 1:
        meta["shard"] = {"id": shard_id, "num": shard_num, "start": shard.start, "stop": shard.stop,
                         "corpus_docs": total, "corpus": corpus.settings()}
    if parquet:
        meta["parquet"] = PARQUET_FILE
    resume_key = {"corpus": corpus.fingerprint(), "shard": [shard_id, shard_num], "chunk_size": int(chunk_size),
                  "batch_size": int(batch_size), "device": str(encoder.device)}
    on_complete = (lambda tmp: export_parquet(tmp, tmp / PARQUET_FILE)) if parquet else None
    chunker = ChunkEncoder(encoder, batch_size=batch_size) if encode_chunks is None else None
    writer = IndexWriter(out_dir, dimension=encoder.dimension, meta=meta, storage_dtype=storage_dtype,
                         overwrite=overwrite, resume_key=resume_key, on_complete=on_complete)
    try:
        with writer:
            done = writer.num_added
            logger.info("encoding %d documents (%d..%d of %d) into %s%s", shard.size, shard.start, shard.stop, total,
                        out_dir, f", resuming after {done}" if done else "")
            with tqdm(total=shard.size, initial=done, unit="doc", desc="encode", disable=not progress) as bar:
                chunks = _chunks(corpus.slice(shard.start + done, shard.stop), chunk_size)
                if encode_chunks is None:   # the bar moves per batch
                    encoded = ((chunk, chunker.encode([text for _, text in chunk], bar.update)) for chunk in chunks)
                else:   # per chunk; tee keeps the chunks in flight until their vectors are back
                    chunks, texts = tee(chunks)
                    encoded = zip(chunks, encode_chunks(([t for _, t in c] for c in texts), bar.update))
                for chunk, vectors in encoded:
                    writer.add([docid for docid, _ in chunk], vectors)
    except KeyboardInterrupt:
        if writer.num_added:
            logger.warning("interrupted: %d documents (completed chunks of %d) are kept in %s; rerun the same "
                           "command to resume after them", writer.num_added, chunk_size, writer.tmp_dir)
        else:
            logger.warning("interrupted before the first chunk of %d documents was complete: nothing was kept",
                           chunk_size)
        raise
    return out_dir
