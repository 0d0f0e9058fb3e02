"""Running on a Ray cluster (the ``ray`` extra): shards searched by Ray actors (:class:`RayShardedSearcher`,
``search --ray``) and corpora encoded by a pool of Ray actors (``encode --ray``).  docs/scale.md."""
from .._lazy import lazy_exports

_EXPORTS = {"RayShardedSearcher": ".search", "RayChunkEncoder": ".encode", "connect": "._ray",
            "import_ray": "._ray"}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
