"""Texts to token tensors, the one way every encoder, feature cache and trainer step tokenizes."""
from __future__ import annotations

from typing import Iterator, Sequence, Tuple

import torch


def tokenize(tokenizer, texts: Sequence[str], max_length: int, device="cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of ``texts``, truncated to ``max_length`` and padded to the longest."""
    batch = tokenizer(list(texts), padding="longest", truncation=True, max_length=int(max_length),
                      return_tensors="pt")
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


def each_alone(tokenizer, texts: Sequence[str], max_length: int, device="cpu") -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """(input_ids, attention_mask) of each text on its own, shape (1, its length): no padding and no batch mates,
    so what a model computes from them does not depend on the other texts (queries are encoded this way)."""
    for ids in tokenizer(list(texts), truncation=True, max_length=int(max_length), padding=False,
                         return_attention_mask=False, return_token_type_ids=False)["input_ids"]:
        ids = torch.tensor([ids], dtype=torch.long, device=device)
        yield ids, torch.ones_like(ids)
