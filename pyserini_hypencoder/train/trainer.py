"""The training loop: batches, losses, periodic dev evaluation, checkpoints and resuming.

Frozen-backbone mode (the default) trains the hyper head (or the bi-encoder's query projection) on backbone
features computed once (:mod:`.cache`); ``freeze_backbone: false`` fine-tunes the backbone on features computed
per batch.  Batches depend only on (seed, step) (:mod:`.sampler`), so a resumed run is the uninterrupted one.
"""
from __future__ import annotations

import json
import logging
import math
import resource
import shutil
import time
from pathlib import Path
from typing import List, Tuple

import torch
from tqdm.auto import tqdm

from .._fsutil import atomic_file
from ..cli import set_threads
from ..model.checkpoint import save_hypencoder
from ..model.hypencoder import pool
from ..model.tokenize import tokenize
from . import cache
from .build import build_model
from .config import TrainConfig
from .data import TrainingData, bm25_run, check_beir, dense_run, interleave, load_beir, load_jsonl
from .evaluation import dev_ndcg_recall, rescore
from .head_init import cosine_start_head, warm_start_head
from .losses import batch_losses
from .parameters import is_frozen_backbone, parameter_groups
from .sampler import BatchSampler, check_examples

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
# Settings that do not change a run's results, so --resume accepts new values for them.
RESUME_MAY_CHANGE = {"threads", "cache_dir", "output_dir", "eval_batch_size"}
# What a run writes into output_dir (and what --overwrite removes).
RUN_OUTPUTS = ("checkpoint", "best", "final", "history.jsonl", "summary.json", "train_config.json")


def remove_run_outputs(out: Path) -> None:
    """--overwrite: remove what a run writes into ``out``, and nothing else that lives there."""
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def read_state(path: Path, config: dict) -> dict:
    """The saved state, if its settings are ``config``'s (but for RESUME_MAY_CHANGE); a one-line error otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume (run without --resume to start)")
    state = torch.load(str(path), map_location="cpu", weights_only=False)
    saved = state["config"]
    changed = sorted(k for k in config if k not in RESUME_MAY_CHANGE and saved.get(k) != config[k])
    if changed:
        raise ValueError(f"--resume: settings differ from the saved run's ({', '.join(changed)}); "
                         f"use the same settings, or --overwrite to start again")
    return state


class Trainer:
    """One training run: ``Trainer(cfg).train()`` -> summary; checkpoints, ``best``/``final`` models and history
    go to ``cfg.output_dir``."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.ckpt = self.out / "checkpoint"
        if (self.ckpt / STATE_FILE).exists() and not resume:
            if not overwrite:
                raise FileExistsError(f"{self.out}: holds a checkpoint; pass --resume to continue it or "
                                      f"--overwrite to start again")
            remove_run_outputs(self.out)
        self.resume_state = read_state(self.ckpt / STATE_FILE, cfg.to_dict()) if resume else None
        self.resume = self.resume_state is not None
        set_threads(cfg.threads)
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
            runs = list(cfg.runs)
            if cfg.bm25_negatives:
                runs.append(bm25_run(cfg.data_path, split=cfg.split, work_dir=self.cache_dir / "bm25" /
                                     Path(cfg.data_path).resolve().name, depth=cfg.negatives_depth))
            data = load_beir(cfg.data_path, split=cfg.split, runs=runs, negatives_depth=cfg.negatives_depth)
        check_examples(data, cfg)
        self._features(data)
        if cfg.backbone_negatives:
            qv = pool(self.qfeat["states"], self.qfeat["mask"], "mean")
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

    def _query_states(self, data: TrainingData, rows: torch.Tensor):
        """Token states and mask of queries ``rows`` (cached features, or the backbone when it trains)."""
        if self.cfg.freeze_backbone:
            mask = self.qfeat["mask"][rows]
            width = int(mask.sum(1).max())
            return self.qfeat["states"][rows, :width], mask[:, :width]
        ids, mask = tokenize(self.model.tokenizer, [data.query_texts[i] for i in rows.tolist()],
                             self.cfg.query_max_length)
        return self.model.query_states(ids, mask, self.cfg.bf16).float(), mask

    def _passages(self, rows: torch.Tensor) -> torch.Tensor:
        """Vectors of training passages ``rows`` (any shape), cached or encoded now."""
        if self.cfg.freeze_backbone:
            return self.pvec[rows]
        ids, mask = tokenize(self.model.tokenizer, [self.data.passage_texts[i] for i in rows.reshape(-1).tolist()],
                             self.cfg.passage_max_length)
        return self.model.encode_passages(ids, mask, self.cfg.bf16).view(*rows.shape, -1)

    # -- evaluation ----------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict:
        """Dev metrics: retrieval nDCG@10 / R@100 over the whole passage table when qrels exist (BEIR route),
        scored as the search CLI scores; else MRR of the positive among each query's own items."""
        if not self.dev.examples:
            return {}
        model, cfg, dev = self.model, self.cfg, self.dev
        model.eval()
        rows = torch.tensor([e.query for e in dev.examples])
        states, mask = self._query_states(dev, rows)
        if cfg.freeze_backbone:
            pvec = self.pvec
        else:
            pvec = cache.passage_vectors(model, dev.passage_texts, max_length=cfg.passage_max_length,
                                         cache_dir=None, bf16=cfg.bf16, desc="dev passages")
        if dev.qrels:
            result = dev_ndcg_recall(model, states, mask, pvec, dev.passage_ids,
                                     [dev.query_ids[q] for q in rows.tolist()], dev.qrels, bf16=cfg.bf16,
                                     batch=cfg.eval_batch_size)
        else:
            cands = [ex.positives[:1] + ex.negatives for ex in dev.examples]
            scores = rescore(model, states, mask, pvec, cands, bf16=cfg.bf16, batch=cfg.eval_batch_size)
            result = {"dev_mrr": sum(1.0 / (1 + sum(x > s[0] for x in s[1:])) for s in scores) / len(scores)}
        model.train()
        return result

    # -- persistence ---------------------------------------------------------------
    def export(self, out_dir: Path) -> Path:
        cfg = self.cfg
        if self.model.head is None:   # the bi-encoder control: its own format
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
            states, mask = self._query_states(self.data, q_rows)
            extra = self._passages(extra_rows) if len(extra_rows) else None
            out = batch_losses(self.model, states, mask, self._passages(item_rows), labels, extra,
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
