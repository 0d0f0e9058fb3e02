"""A short, stable fingerprint of a module's current weights (index/model agreement, feature caches)."""
from __future__ import annotations

import hashlib

import torch

_CACHE_ATTR = "_weights_fingerprint"


def _state_key(state) -> tuple:
    """What changes whenever a tensor does: its storage, its version counter (bumped by every in-place change,
    optimizer steps and ``load_state_dict`` included) and its sum (for changes made through ``.data``)."""
    sums = torch.stack([t.detach().float().sum() for _, t in state]).tolist() if state else []
    return tuple((name, t.data_ptr(), t._version, tuple(t.shape), str(t.dtype), s)
                 for (name, t), s in zip(state, sums))


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha256 (first 16 hex digits) over every tensor of the state dict, by sorted name.

    The digest is kept on the module and reused while the weights stay the same; a model trained or edited
    after it was fingerprinted is hashed again, so the fingerprint always describes the current weights."""
    state = sorted(module.state_dict().items())
    key = _state_key(state)
    cached = getattr(module, _CACHE_ATTR, None)
    if cached is not None and cached[0] == key:
        return cached[1]
    digest = hashlib.sha256()
    for name, tensor in state:
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    fingerprint = digest.hexdigest()[:16]
    setattr(module, _CACHE_ATTR, (key, fingerprint))
    return fingerprint
