"""A short, stable fingerprint of a module's weights (index/model agreement, feature caches)."""
from __future__ import annotations

import hashlib

import torch


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha256 (first 16 hex digits) over every tensor of the state dict, by sorted name; cached on the module."""
    cached = getattr(module, "_weights_fingerprint", None)
    if cached:
        return cached
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    module._weights_fingerprint = digest.hexdigest()[:16]
    return module._weights_fingerprint
