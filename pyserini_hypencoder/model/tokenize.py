"""Texts to padded token tensors, the one way every encoder, feature cache and trainer step tokenizes."""
from __future__ import annotations

from typing import Sequence, Tuple

import torch


def tokenize(tokenizer, texts: Sequence[str], max_length: int, device="cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of ``texts``, truncated to ``max_length`` and padded to the longest."""
    batch = tokenizer(list(texts), padding="longest", truncation=True, max_length=int(max_length),
                      return_tensors="pt")
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)
