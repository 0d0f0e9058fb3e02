"""In-process effectiveness measures as trec_eval computes them (for dev evaluation during training and for
benchmarks; reported figures come from ``python -m pyserini.eval.trec_eval``)."""
from __future__ import annotations

import math
from typing import Mapping, Sequence, Tuple


def ndcg(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k of one ranking: linear gains, log2 discount, the ideal ranking from all judgments (ndcg_cut.k)."""
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if judged.get(d, 0) > 0)
    ideal = sorted((v for v in judged.values() if v > 0), reverse=True)[:k]
    idcg = sum(v / math.log2(i + 2) for i, v in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall(ranked: Sequence[str], judged: Mapping[str, int], k: int = 100) -> float:
    """Share of the relevant documents (relevance > 0) found in the first k (recall.k)."""
    relevant = sum(1 for v in judged.values() if v > 0)
    return sum(1 for d in ranked[:k] if judged.get(d, 0) > 0) / relevant if relevant else 0.0


def mean_ndcg_recall(runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], k: int = 10,
                     r: int = 100) -> Tuple[float, float]:
    """Mean nDCG@k and recall@r over the queries of ``runs`` ({qid: docids best first})."""
    if not runs:
        return 0.0, 0.0
    nd = [ndcg(docs, qrels.get(qid, {}), k) for qid, docs in runs.items()]
    rc = [recall(docs, qrels.get(qid, {}), r) for qid, docs in runs.items()]
    return sum(nd) / len(nd), sum(rc) / len(rc)
