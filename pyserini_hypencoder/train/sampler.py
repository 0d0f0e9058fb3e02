"""Deterministic training batches: epoch permutations seeded by (seed, epoch), choices by (seed, step), so a
resumed run draws the same batches as an uninterrupted one; and the checks that every batch can be scored."""
from __future__ import annotations

import math

import torch

from .config import TrainConfig
from .data import TrainingData


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
        if cfg.random_negatives:   # shared random passages, none a positive of the batch
            drawn = torch.randperm(self.num_passages, generator=g)[:cfg.random_negatives + len(batch_pos)].tolist()
            extra = [r for r in drawn if r not in batch_pos][:cfg.random_negatives]
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
