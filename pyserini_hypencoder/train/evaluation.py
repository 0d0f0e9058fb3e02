"""Scoring a model's queries (backbone token states) against passage vectors through the search CLI's own paths:
exact search with its run order for retrieval, the reranker's candidate scoring for reranking.  Dev evaluation
during training and ``train.evaluate`` both use these, so their numbers are the search CLI's numbers."""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

import torch

from ..index.vectors import Vectors
from ..metrics import mean_ndcg_recall
from ..model.qnet import QNetBatch
from ..search.exact import complete_ties, exact_search, ranked_hits
from ..search.rerank import score_candidates

Hits = List[Tuple[str, float]]


def _qnet_batches(model, states: torch.Tensor, mask: torch.Tensor, batch: int, bf16: bool):
    """(first query, q-nets) per batch of ``batch`` queries, each q-net made from its own query's unpadded states
    in fp32 and scoring in bf16 with ``bf16``, as the query encoder makes it."""
    lengths = mask.sum(1).tolist()
    for start in range(0, states.shape[0], batch):
        qnets = QNetBatch.concat([model.qnets_from_states(states[i:i + 1, :n], mask[i:i + 1, :n])
                                  for i, n in enumerate(lengths[start:start + batch], start)])
        yield start, qnets.to(compute_dtype=torch.bfloat16) if bf16 else qnets


@torch.no_grad()
def retrieve(model, states: torch.Tensor, mask: torch.Tensor, passages: torch.Tensor, docids: Sequence[str],
             k: int, *, bf16: bool = False, batch: int = 64) -> List[Hits]:
    """Each query's k best passages in run order (exact search, ties at the cut completed, printed score, docid)."""
    vectors = Vectors(model.passage_side(passages))
    hits: List[Hits] = []
    for _, qnets in _qnet_batches(model, states, mask, batch, bf16):
        found = complete_ties(lambda depth: exact_search(qnets, vectors, depth), k, vectors.num_rows)
        hits.extend(ranked_hits(found, docids, k))
    return hits


@torch.no_grad()
def rescore(model, states: torch.Tensor, mask: torch.Tensor, passages: torch.Tensor,
            candidates: Sequence[Sequence[int]], *, bf16: bool = False, batch: int = 64) -> List[List[float]]:
    """Each query's scores of its own candidates (rows of ``passages``), as the reranker scores them."""
    needed = sorted({r for rows in candidates for r in rows})
    vectors = dict(zip(needed, model.passage_side(passages[needed]).float().cpu().numpy()))
    scores: List[List[float]] = []
    for start, qnets in _qnet_batches(model, states, mask, batch, bf16):
        scores.extend(score_candidates(qnets, list(candidates[start:start + len(qnets)]), vectors))
    return scores


def dev_ndcg_recall(model, states, mask, passages, docids: Sequence[str], qids: Sequence[str],
                    qrels: Mapping[str, Mapping[str, int]], *, bf16: bool = False, batch: int = 64) -> Dict[str, float]:
    """Dev nDCG@10 and recall@100 of retrieval over ``passages``, as trec_eval computes them."""
    hits = retrieve(model, states, mask, passages, docids, 100, bf16=bf16, batch=batch)
    ndcg, recall = mean_ndcg_recall({qid: [d for d, _ in h] for qid, h in zip(qids, hits)}, qrels)
    return {"dev_ndcg@10": ndcg, "dev_recall@100": recall}
