"""The training loop: batches, losses, periodic dev evaluation, checkpoints and resuming.

Frozen-backbone mode (the default) runs the backbone once over every training query and passage
(cached on disk, see :mod:`.cache`) and trains only the hyper head (or the bi-encoder's query
projection) on those features.  With ``freeze_backbone: false`` the backbone is fine-tuned and
features are computed per batch.  Every random choice of step ``s`` comes from a generator seeded
with ``(seed, s)``, so a resumed run draws the same batches as an uninterrupted one.
"""
from __future__ import annotations

import json
import logging
import math
import resource
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from tqdm.auto import tqdm

from .._fsutil import atomic_file
from ..model.checkpoint import load_hypencoder, save_hypencoder
from ..model.hypencoder import Hypencoder
from . import cache, losses
from .biencoder import BiEncoder
from .config import TrainConfig
from .data import TrainingData, bm25_run, check_beir, dense_run, interleave, load_beir, load_jsonl, read_run

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
# Settings that do not change a run's results, so --resume accepts new values for them.
RESUME_MAY_CHANGE = {"threads", "cache_dir", "output_dir", "eval_batch_size"}
# What a run writes into output_dir (and what --overwrite removes).
RUN_OUTPUTS = ("checkpoint", "best", "final", "history.jsonl", "summary.json", "train_config.json")


# -- model -------------------------------------------------------------------
def build_model(cfg: TrainConfig):
    if cfg.model_kind == "biencoder":
        from ..model.checkpoint import load_backbone
        backbone, tokenizer, source = load_backbone(cfg.backbone)
        return BiEncoder(backbone, tokenizer, pooling=cfg.pooling, normalize=cfg.normalize,
                         settings={"backbone": source})
    if cfg.init_from:
        model = load_hypencoder(cfg.init_from)
        dims = list(model.spec.vector_dimensions)
        if cfg.vector_dimensions and list(cfg.vector_dimensions) != dims:
            raise ValueError(f"vector_dimensions {list(cfg.vector_dimensions)} differ from init_from's q-net {dims}")
    else:
        model = Hypencoder.from_backbone(cfg.backbone, vector_dimensions=cfg.vector_dimensions,
                                         num_hidden_layers=cfg.num_hidden_layers, activation=cfg.activation,
                                         do_residual=cfg.do_residual, do_residual_on_last=cfg.do_residual_on_last,
                                         do_layer_norm=cfg.do_layer_norm,
                                         pooling=cfg.pooling, seed=cfg.init_seed)
    model.settings.update({"query_max_length": cfg.query_max_length, "passage_max_length": cfg.passage_max_length,
                           "pooling": model.pooling})
    return model


def _start_near_linear(head, name: str):
    """Checks shared by the warm and cosine starts, and their common first step: the hidden blocks' generated
    weights lose their query-independent base, so ``x W_j`` starts near 0 and the residual carries the passage
    vector to the last layer.  Returns (hidden size h, index k of the last weight)."""
    spec = head.spec
    if any(not spec.residual_at(j) for j in range(spec.num_layers - 1)):
        raise ValueError(f"head_init {name!r} needs do_residual and do_residual_on_last (a residual on every block)")
    h, k = head.hidden_size, spec.num_layers - 1
    if spec.vector_dimensions[k] != h:
        raise ValueError(f"head_init {name!r} needs the last q-net layer to have the backbone's width")
    for i in range(k):
        head.hyper_base_matrices[i].zero_()
    return h, k


@torch.no_grad()
def warm_start_head(head, passage_vectors: Optional[torch.Tensor] = None, *, seed: int = 1) -> None:
    """Start the q-net as a (projected) dot product with the mean-pooled query, plus near-zero hidden layers.

    The first ``L-1`` generated weights lose their query-independent base (so ``x W_j`` starts near 0 and
    the residual carries the passage vector through); the last weight's attention becomes uniform
    (key projection 0 = mean pooling of the query tokens) and its value/output projections become
    ``[A; -A]`` / ``[A^T, -A^T]``, so that ``ReLU`` loses nothing and ``w_last = A^T A q`` up to the layer
    norm's scale.  ``A`` holds the top h/2 principal directions of the passage vectors (a random
    orthonormal basis without them).  Needs a residual connection on every hidden block.
    """
    h, k = _start_near_linear(head, "warm")
    if passage_vectors is not None and passage_vectors.shape[0] >= 2:
        x = passage_vectors.float() - passage_vectors.float().mean(0)
        basis = torch.linalg.svd(x, full_matrices=False).Vh
        if basis.shape[0] < h // 2:
            basis = None
    else:
        basis = None
    if basis is None:
        g = torch.Generator().manual_seed(seed)
        basis = torch.linalg.qr(torch.randn(h, h, generator=g))[0].T
    a = basis[: h // 2].to(head.key_projections[k].weight.dtype)
    head.key_projections[k].weight.zero_()
    head.key_projections[k].bias.zero_()
    head.value_projections[k].weight.zero_()
    head.value_projections[k].weight[: 2 * a.shape[0]] = torch.cat([a, -a])
    head.value_projections[k].bias.zero_()
    head.weight_hyper_projection[k].weight.zero_()
    head.weight_hyper_projection[k].weight[:, : 2 * a.shape[0]] = torch.cat([a, -a]).T
    head.weight_hyper_projection[k].bias.zero_()
    head.hyper_base_matrices[k].zero_()


# Value-projection bias of the "cosine" start: keeps ReLU the identity for mean-pooled MiniLM-like token states
# (|values| < 1 typically), small enough that the shifted values keep their precision in bf16.
COSINE_SHIFT = 1.0
COSINE_LOGIT_SCALE = 20.0


@torch.no_grad()
def cosine_start_head(head) -> None:
    """Start the q-net as a scaled cosine between the (centred) mean-pooled query and the passage vector.

    Hidden generated weights lose their base (``x W_j`` near 0; the residual carries the passage vector).  The
    last weight's generator pools the query tokens by their mean (its attention query is zero), its value
    projection is the identity plus ``COSINE_SHIFT`` (ReLU passes everything, the layer norm removes the
    shift) and its output projection ``s I`` with ``s = 20 / sqrt(h)``, so ``w_last = 20 * centred(m) /
    |centred(m)|``.  The trainer keeps the pooling, the output projection and the base of the last weight
    fixed (:func:`fixed_parameter_names`): ``|w_last|`` stays 20, like the control's cosine with logit scale 20,
    while the value projection and biases learn.
    """
    h, k = _start_near_linear(head, "cosine")
    eye = torch.eye(h, dtype=head.value_projections[k].weight.dtype)
    head.weight_query_embeddings[k].zero_()
    head.key_projections[k].weight.zero_()
    head.key_projections[k].bias.zero_()
    head.value_projections[k].weight.copy_(eye)
    head.value_projections[k].bias.fill_(COSINE_SHIFT)
    head.weight_hyper_projection[k].weight.copy_(eye * (COSINE_LOGIT_SCALE / math.sqrt(h)))
    head.weight_hyper_projection[k].bias.zero_()
    head.hyper_base_matrices[k].zero_()


def fixed_parameter_names(model, cfg: TrainConfig) -> set:
    """Hyper-head tensors that a "cosine" start keeps at their initial values: the last weight's token pooling
    (attention query and key projection), output projection and base."""
    if cfg.head_init != "cosine" or isinstance(model, BiEncoder):
        return set()
    k = model.spec.num_layers - 1
    return _last_generator_names(k) - {f"head.value_projections.{k}.weight", f"head.value_projections.{k}.bias"}


def _last_generator_names(k: int) -> set:
    """Parameter names of the hyper-head parts that generate the q-net's last weight (index ``k``)."""
    names = {f"head.{n}.{k}" for n in ("hyper_base_matrices", "weight_query_embeddings")}
    return names | {f"head.{n}.{k}.{w}" for n in ("weight_hyper_projection", "key_projections", "value_projections")
                    for w in ("weight", "bias")}


def is_frozen_backbone(name: str, cfg: TrainConfig) -> bool:
    """Whether parameter ``name`` belongs to a backbone that ``freeze_backbone`` keeps fixed."""
    return cfg.freeze_backbone and name.startswith(("backbone.", "passage_backbone."))


def trainable_parameters(model, cfg: TrainConfig):
    fixed = fixed_parameter_names(model, cfg)
    for name, p in model.named_parameters():
        p.requires_grad_(not is_frozen_backbone(name, cfg) and name not in fixed)
    return [p for p in model.parameters() if p.requires_grad]


def parameter_groups(model, cfg: TrainConfig) -> List[dict]:
    """Optimizer groups: the hyper-head parts that generate the q-net's hidden layers get
    ``lr * hidden_lr_scale``; the last layer's generator, the backbone and the bi-encoder get ``lr``."""
    params = trainable_parameters(model, cfg)
    if isinstance(model, BiEncoder) or (cfg.hidden_lr_scale == 1.0 and cfg.hidden_parts == "all"):
        return [{"params": params, "lr": cfg.lr}]
    last = _last_generator_names(model.spec.num_layers - 1)
    main, hidden = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if not name.startswith("head.") or name in last:
            main.append(p)
        elif cfg.hidden_parts == "all" or name.startswith(("head.hyper_base_matrices.", "head.hyper_base_vectors.")):
            hidden.append(p)
        else:   # hidden_parts "base": the query-dependent generators stay at their initial values
            p.requires_grad_(False)
    if cfg.hidden_lr_scale == 0:   # frozen at their initial values: no gradients needed
        for p in hidden:
            p.requires_grad_(False)
        return [{"params": main, "lr": cfg.lr}]
    return [{"params": main, "lr": cfg.lr}, {"params": hidden, "lr": cfg.lr * cfg.hidden_lr_scale}]


# -- losses -------------------------------------------------------------------
def batch_losses(model, states: torch.Tensor, mask: torch.Tensor, items: torch.Tensor,
                 labels: Optional[torch.Tensor], extra: Optional[torch.Tensor], *, margin_mse_weight: float = 0.0,
                 cross_entropy_weight: float = 1.0, use_in_batch_negatives: bool = True,
                 only_use_first_item: bool = True, ce_scale: float = 1.0, bf16: bool = False) -> Dict[str, torch.Tensor]:
    """Losses for one batch.  ``states``/``mask``: query token states (B, n, h); ``items``: passage vectors
    (B, 1+K, h) with the positive first; ``labels``: teacher scores (B, 1+K) or None; ``extra``: shared
    passages (R, h) added as CE columns.  Returns margin_mse, cross_entropy and total."""
    b, m, h = items.shape
    if isinstance(model, BiEncoder):
        q = model.query_vectors(states, mask)
        own = model.score_own(q, items)
        score_cols = lambda cols: model.score_all(q, cols)
        scale = ce_scale * model.scale
    else:
        qnets = model.qnets_from_states(states, mask, bf16=bf16, detach=False)
        own = qnets.forward(items)
        score_cols = lambda cols: qnets.forward(cols.unsqueeze(0).expand(b, -1, -1))
        scale = ce_scale
    out = {}
    total = own.new_zeros(())
    if margin_mse_weight:
        if labels is None:
            raise ValueError("margin-MSE needs teacher scores (the 'score' of every item)")
        out["margin_mse"] = losses.margin_mse(own, labels)
        total = total + margin_mse_weight * out["margin_mse"]
    if cross_entropy_weight:
        if use_in_batch_negatives:
            cols = items[:, 0] if only_use_first_item else items.reshape(b * m, h)
            if extra is not None and len(extra):
                cols = torch.cat([cols, extra.to(cols.dtype)])
            matrix = score_cols(cols)
            targets = losses.in_batch_targets(b, m, only_use_first_item, device=matrix.device)
        else:
            matrix, targets = own, torch.zeros(b, dtype=torch.long, device=own.device)
        out["cross_entropy"] = losses.cross_entropy(matrix, targets, scale=scale)
        total = total + cross_entropy_weight * out["cross_entropy"]
    out["total"] = total
    return out


# -- batches ------------------------------------------------------------------
class BatchSampler:
    """Deterministic batches: epoch permutations seeded by (seed, epoch), choices by (seed, step)."""

    def __init__(self, data: TrainingData, cfg: TrainConfig):
        self.data, self.cfg = data, cfg
        self.n = len(data.examples)
        self.steps_per_epoch = math.ceil(self.n / cfg.batch_size)
        self.num_passages = len(data.passage_ids)

    def total_steps(self) -> int:
        if self.cfg.steps:
            return int(self.cfg.steps)
        return max(1, int(round(self.cfg.epochs * self.steps_per_epoch)))

    def batch(self, step: int):
        cfg = self.cfg
        epoch, pos = divmod(step, self.steps_per_epoch)
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
        chosen = perm[pos * cfg.batch_size:(pos + 1) * cfg.batch_size].tolist()
        g = torch.Generator().manual_seed(cfg.seed * 7919 + 1000003 * (step + 1))
        q_rows, item_rows, labels = [], [], []
        batch_pos = set()
        for i in chosen:
            ex = self.data.examples[i]
            positive = ex.positives[int(torch.randint(len(ex.positives), (1,), generator=g))]
            pool = ex.negatives   # mined lists are cut to negatives_depth where they are interleaved
            if len(pool) >= cfg.negatives:
                negs = [pool[j] for j in torch.randperm(len(pool), generator=g)[:cfg.negatives].tolist()]
            else:
                negs = list(pool)
                banned = set(ex.positives) | set(pool)
                while len(negs) < cfg.negatives and len(banned) < self.num_passages:
                    r = int(torch.randint(self.num_passages, (1,), generator=g))
                    if r not in banned:
                        banned.add(r)
                        negs.append(r)
            rows = [positive] + negs
            q_rows.append(ex.query)
            item_rows.append(rows)
            batch_pos.update(ex.positives)
            if ex.scores is not None and all(r in ex.scores for r in rows):
                labels.append([ex.scores[r] for r in rows])
        extra = []
        if cfg.random_negatives:
            for r in torch.randperm(self.num_passages, generator=g)[:cfg.random_negatives + len(batch_pos)].tolist():
                if r not in batch_pos and len(extra) < cfg.random_negatives:
                    extra.append(r)
        lab = torch.tensor(labels, dtype=torch.float32) if len(labels) == len(chosen) else None
        return (torch.tensor(q_rows), torch.tensor(item_rows), lab, torch.tensor(extra, dtype=torch.long))


def check_examples(data: TrainingData, cfg: TrainConfig) -> None:
    """Fail before any training step when the losses cannot be computed for every batch."""
    if cfg.margin_mse_weight > 0:
        if cfg.backbone_negatives:
            raise ValueError("margin_mse_weight > 0 cannot use backbone_negatives: mined negatives have no teacher "
                             "scores")
        if not data.has_teacher_scores:
            raise ValueError("margin_mse_weight > 0 needs a teacher score on every item (the JSONL 'score'); "
                             "this data has none for some queries")
        short = sum(1 for e in data.examples if len(e.negatives) < cfg.negatives)
        if short:
            raise ValueError(f"margin-MSE: {short} queries have fewer than negatives={cfg.negatives} scored "
                             f"negatives (random fill-ins have no teacher score); lower negatives")


# -- evaluation ----------------------------------------------------------------
def ndcg_recall(ranked: Dict[str, List[str]], qrels: Dict[str, Dict[str, int]], k: int = 10, r: int = 100):
    """Mean nDCG@k (linear gains, log2 discount, as trec_eval ndcg_cut) and recall@r over ``ranked``'s queries."""
    nd, rc = [], []
    for qid, docs in ranked.items():
        rel = qrels.get(qid, {})
        dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(docs[:k]) if rel.get(d, 0) > 0)
        ideal = sorted((v for v in rel.values() if v > 0), reverse=True)[:k]
        idcg = sum(v / math.log2(i + 2) for i, v in enumerate(ideal))
        nd.append(dcg / idcg if idcg else 0.0)
        npos = sum(1 for v in rel.values() if v > 0)
        rc.append(sum(1 for d in docs[:r] if rel.get(d, 0) > 0) / npos if npos else 0.0)
    return (sum(nd) / len(nd), sum(rc) / len(rc)) if nd else (0.0, 0.0)


@torch.no_grad()
def score_matrix(model, states, mask, docs, *, bf16: bool = False, batch: int = 64) -> torch.Tensor:
    """(Q, N) scores of queries (cached token states) against passage vectors."""
    out = []
    for s in range(0, states.shape[0], batch):
        st, mk = states[s:s + batch], mask[s:s + batch]
        width = int(mk.sum(1).max())
        st, mk = st[:, :width], mk[:, :width]
        if isinstance(model, BiEncoder):
            out.append(model.score_all(model.query_vectors(st, mk), docs))
        else:
            out.append(model.qnets_from_states(st, mk, bf16=bf16).score(docs))
    return torch.cat(out)


# -- the trainer ----------------------------------------------------------------
class Trainer:
    def __init__(self, cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.ckpt = self.out / "checkpoint"
        if (self.ckpt / STATE_FILE).exists() and not resume:
            if not overwrite:
                raise FileExistsError(f"{self.out}: holds a checkpoint; pass --resume to continue it or "
                                      f"--overwrite to start again")
            self._remove_run_outputs()
        self.resume_state = self._read_resume_state() if resume else None
        self.resume = self.resume_state is not None
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else cache.DEFAULT_CACHE_DIR
        self.model = build_model(cfg)
        self.data, self.dev = self._load_data()
        if cfg.model_kind == "hypencoder" and not cfg.init_from and not self.resume:
            if cfg.head_init == "warm":
                warm_start_head(self.model.head, self.pvec, seed=cfg.init_seed)
            elif cfg.head_init == "cosine":
                cosine_start_head(self.model.head)
        self.sampler = BatchSampler(self.data, cfg)
        groups = parameter_groups(self.model, cfg)
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.total_steps = self.sampler.total_steps()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step, self.best, self.best_step = 0, -1.0, -1
        self.history: List[dict] = []
        self.elapsed = 0.0

    def _lr_factor(self, step: int) -> float:
        cfg = self.cfg
        if step < cfg.warmup_steps:
            return (step + 1) / max(1, cfg.warmup_steps)
        if cfg.schedule == "constant":
            return 1.0
        frac = (step - cfg.warmup_steps) / max(1, self.total_steps - cfg.warmup_steps)
        frac = min(max(frac, 0.0), 1.0)
        return 1.0 - frac if cfg.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * frac))

    # -- data and features -----------------------------------------------------
    def _load_data(self) -> Tuple[TrainingData, TrainingData]:
        cfg = self.cfg
        if cfg.data_format == "jsonl":
            data = load_jsonl(cfg.data_path, positive_filter=cfg.positive_filter, score_threshold=cfg.score_threshold)
        else:
            check_beir(cfg.data_path, cfg.split)
            runs = [read_run(r) for r in cfg.runs]
            if cfg.bm25_negatives:
                runs.append(read_run(bm25_run(cfg.data_path, split=cfg.split, work_dir=self.cache_dir / "bm25" /
                                              Path(cfg.data_path).resolve().name, depth=cfg.negatives_depth)))
            data = load_beir(cfg.data_path, split=cfg.split, runs=runs, negatives_depth=cfg.negatives_depth)
        check_examples(data, cfg)
        self._features(data)
        if cfg.backbone_negatives:
            qv = cache.mean_pool(self.qfeat)
            dense = dense_run(qv, self.pvec, data.query_ids, data.passage_ids, cfg.negatives_depth)
            row = {p: i for i, p in enumerate(data.passage_ids)}
            for ex in data.examples:   # the data's own negatives interleaved with the backbone's
                qid = data.query_ids[ex.query]
                judged = data.qrels.get(qid, {})
                mined = [row[p] for p in dense.get(qid, [])[:cfg.negatives_depth]
                         if p not in judged and row[p] not in ex.positives]
                ex.negatives = interleave([ex.negatives[:cfg.negatives_depth], mined], cfg.negatives_depth)
        train, dev = data.split(cfg.dev_fraction, cfg.seed)
        logger.info("training on %d queries, dev %d queries (carved from the training split)",
                    len(train.examples), len(dev.examples))
        return train, dev

    def _features(self, data: TrainingData) -> None:
        cfg = self.cfg
        self.qfeat = self.pvec = None
        if cfg.freeze_backbone:
            self.qfeat = cache.query_states(self.model, data.query_texts, max_length=cfg.query_max_length,
                                            cache_dir=self.cache_dir)
            self.pvec = cache.passage_vectors(self.model, data.passage_texts, max_length=cfg.passage_max_length,
                                              cache_dir=self.cache_dir)
        elif cfg.backbone_negatives:
            raise ValueError("backbone_negatives needs freeze_backbone (cached backbone vectors)")

    def _batch_tensors(self, q_rows, item_rows):
        cfg, model = self.cfg, self.model
        if cfg.freeze_backbone:
            mask = self.qfeat["mask"][q_rows]
            width = int(mask.sum(1).max())
            return self.qfeat["states"][q_rows, :width], mask[:, :width], self.pvec[item_rows]
        tok = model.tokenizer([self.data.query_texts[i] for i in q_rows.tolist()], padding="longest",
                              truncation=True, max_length=cfg.query_max_length, return_tensors="pt")
        states = model.query_states(tok["input_ids"], tok["attention_mask"], cfg.bf16).float()
        flat = item_rows.reshape(-1)
        ptok = model.tokenizer([self.data.passage_texts[i] for i in flat.tolist()], padding="longest",
                               truncation=True, max_length=cfg.passage_max_length, return_tensors="pt")
        vecs = model.encode_passages(ptok["input_ids"], ptok["attention_mask"], cfg.bf16)
        return states, tok["attention_mask"], vecs.view(*item_rows.shape, -1)

    def _extra(self, rows):
        if not len(rows):
            return None
        if self.cfg.freeze_backbone:
            return self.pvec[rows]
        tok = self.model.tokenizer([self.data.passage_texts[i] for i in rows.tolist()], padding="longest",
                                   truncation=True, max_length=self.cfg.passage_max_length, return_tensors="pt")
        return self.model.encode_passages(tok["input_ids"], tok["attention_mask"], self.cfg.bf16)

    # -- evaluation ----------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict:
        """Dev metrics: retrieval nDCG@10 / R@100 over the whole passage table when qrels exist
        (BEIR route), else MRR of the positive among each query's own items."""
        if not self.dev.examples:
            return {}
        model, cfg = self.model, self.cfg
        model.eval()
        rows = torch.tensor([e.query for e in self.dev.examples])
        if cfg.freeze_backbone:
            states, mask, pvec = self.qfeat["states"][rows], self.qfeat["mask"][rows], self.pvec
        else:
            tok = model.tokenizer([self.dev.query_texts[i] for i in rows.tolist()], padding="longest",
                                  truncation=True, max_length=cfg.query_max_length, return_tensors="pt")
            states, mask = model.query_states(tok["input_ids"], tok["attention_mask"], cfg.bf16).float(), \
                tok["attention_mask"]
            pvec = cache.passage_vectors(model, self.dev.passage_texts, max_length=cfg.passage_max_length,
                                         cache_dir=None, bf16=cfg.bf16, desc="dev passages")
        result = {}
        if self.dev.qrels:
            scores = score_matrix(model, states, mask, pvec, bf16=cfg.bf16)
            top = scores.topk(min(100, scores.shape[1]), dim=1).indices
            ranked = {self.dev.query_ids[q]: [self.dev.passage_ids[j] for j in top[i].tolist()]
                      for i, q in enumerate(rows.tolist())}
            result["dev_ndcg@10"], result["dev_recall@100"] = ndcg_recall(ranked, self.dev.qrels)
        else:
            rr = []
            for i, ex in enumerate(self.dev.examples):
                cands = ex.positives[:1] + ex.negatives
                s = score_matrix(model, states[i:i + 1], mask[i:i + 1], pvec[cands], bf16=cfg.bf16)[0]
                rr.append(1.0 / (1 + int((s[1:] > s[0]).sum())))
            result["dev_mrr"] = sum(rr) / len(rr)
        model.train()
        return result

    # -- persistence ---------------------------------------------------------------
    def export(self, out_dir: Path) -> Path:
        cfg = self.cfg
        if isinstance(self.model, BiEncoder):
            self.model.settings.update({"query_max_length": cfg.query_max_length,
                                        "passage_max_length": cfg.passage_max_length})
            return self.model.save(out_dir, include_backbone=not cfg.freeze_backbone)
        self.model.settings["training"] = {"config": cfg.to_dict(), "step": self.step}
        # A frozen backbone that an installed package / directory / Hub id provides is named, not stored;
        # a backbone that came inside an init_from checkpoint travels with the model.
        include = not cfg.freeze_backbone or not self.model.settings.get("backbone")
        # A head initialised here from init_seed: tensors still at their initial values are regenerated on load.
        seed = None if cfg.init_from else cfg.init_seed
        return save_hypencoder(self.model, str(out_dir), include_backbone=include,
                               half_precision_head=cfg.half_precision_save, head_init_seed=seed)

    def _remove_run_outputs(self) -> None:
        """--overwrite: remove what a run writes into output_dir, and nothing else that lives there."""
        for name in RUN_OUTPUTS:
            path = self.out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def _read_resume_state(self) -> dict:
        """The saved training state, if its settings are this run's; a one-line error otherwise."""
        path = self.ckpt / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no checkpoint to resume (run without --resume to start)")
        state = torch.load(str(path), map_location="cpu", weights_only=False)
        saved, now = state["config"], self.cfg.to_dict()
        changed = sorted(k for k in now if k not in RESUME_MAY_CHANGE and saved.get(k) != now[k])
        if changed:
            raise ValueError(f"--resume: settings differ from the saved run's ({', '.join(changed)}); "
                             f"use the same settings, or --overwrite to start again")
        return state

    def _saved_parameters(self) -> dict:
        """Every parameter except a frozen backbone's, so fixed tensors (a cosine start's) survive a resume."""
        return {n: p.detach().clone() for n, p in self.model.named_parameters()
                if not is_frozen_backbone(n, self.cfg)}

    def save_checkpoint(self) -> None:
        state = {
            "step": self.step, "best": self.best, "best_step": self.best_step, "history": self.history,
            "elapsed": self.elapsed, "config": self.cfg.to_dict(), "params": self._saved_parameters(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_file(self.ckpt / STATE_FILE, "wb") as f:
            torch.save(state, f)

    def load_checkpoint(self) -> None:
        state, self.resume_state = self.resume_state, None   # read once at start-up; not kept after loading
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, v in state["params"].items():
                params[n].copy_(v)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.best, self.best_step = state["step"], state["best"], state["best_step"]
        self.history, self.elapsed = state["history"], state["elapsed"]
        logger.info("resumed %s at step %d", self.ckpt, self.step)

    # -- loop ----------------------------------------------------------------------
    def train(self) -> dict:
        cfg = self.cfg
        if self.resume:
            self.load_checkpoint()
        else:
            with atomic_file(self.out / "train_config.json") as f:
                f.write(json.dumps(cfg.to_dict(), indent=2) + "\n")
        save_every = cfg.save_every or cfg.eval_every
        self.model.train()
        start = time.time() - self.elapsed
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step")
        while self.step < self.total_steps:
            q_rows, item_rows, labels, extra_rows = self.sampler.batch(self.step)
            states, mask, items = self._batch_tensors(q_rows, item_rows)
            out = batch_losses(self.model, states, mask, items, labels, self._extra(extra_rows),
                               margin_mse_weight=cfg.margin_mse_weight, cross_entropy_weight=cfg.cross_entropy_weight,
                               use_in_batch_negatives=cfg.use_in_batch_negatives,
                               only_use_first_item=cfg.only_use_first_item, ce_scale=cfg.ce_scale, bf16=cfg.bf16)
            self.optimizer.zero_grad(set_to_none=True)
            out["total"].backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            record = {"step": self.step, "loss": float(out["total"].detach()), "lr": self.scheduler.get_last_lr()[0]}
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
            if self.step % cfg.eval_every == 0 or self.step == self.total_steps:
                record.update(self.evaluate())
                metric = record.get("dev_ndcg@10", record.get("dev_mrr"))
                if metric is not None and metric > self.best:
                    self.best, self.best_step = metric, self.step
                    if cfg.select_best:
                        self.export(self.out / "best")
                logger.info("step %d: %s", self.step, {k: round(v, 4) for k, v in record.items()})
            self.history.append(record)
            self.elapsed = time.time() - start
            if self.step % save_every == 0 or self.step == self.total_steps:
                self.save_checkpoint()
        bar.close()
        self.export(self.out / "final")
        summary = {"steps": self.step, "best_dev": self.best, "best_step": self.best_step,
                   "train_seconds": round(self.elapsed, 1),
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                   "train_queries": len(self.data.examples), "dev_queries": len(self.dev.examples),
                   "final_loss": self.history[-1]["loss"] if self.history else None}
        with atomic_file(self.out / "summary.json") as f:
            f.write(json.dumps(summary, indent=2) + "\n")
        with atomic_file(self.out / "history.jsonl") as f:
            for r in self.history:
                f.write(json.dumps(r) + "\n")
        return summary
