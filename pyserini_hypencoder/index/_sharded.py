"""Shard indexes searched as one collection, without merging them.

:class:`ShardedIndex` is a :class:`DenseIndex` whose vectors are a :class:`ConcatRows` view over the shards' memory
maps: rows are numbered as in the index ``merge_indexes`` would write (shards in shard-id order), and a block or a
set of rows is read from whichever shards hold it, one block at a time.  Every strategy that reads through
:class:`~.vectors.Vectors` (exact, surrogate, the reranker's lookups) therefore scores the same tensors as on the
merged index, and writes the same run file.  Structures (graph, ivf) stay per shard (``shards``).

:func:`open_index` takes one index directory, a comma-separated list of shard directories, or a directory whose
subdirectories are the shards.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Sequence, Union

import numpy as np

from ._format import META_FILE, IndexFormatError, IndexMismatchError
from ._reader import DenseIndex

logger = logging.getLogger(__name__)

# Settings every shard must share; a difference means their vectors are not comparable.
SHARED_KEYS = ("encoder_fingerprint", "document_fingerprint", "dimension", "dtype", "pooling", "max_length", "bf16")


class ConcatRows:
    """A read-only (N, d) array-like over shard arrays laid end to end: ``view[start:stop]`` and ``view[positions]``
    return numpy arrays of the stored dtype, read from each shard's own (memory-mapped) array."""

    ndim = 2

    def __init__(self, parts: Sequence[np.ndarray]):
        if not parts:
            raise ValueError("no shard arrays")
        widths = {int(p.shape[1]) for p in parts}
        dtypes = {np.dtype(p.dtype) for p in parts}
        if len(widths) != 1 or len(dtypes) != 1:
            raise ValueError(f"shard arrays differ in width or dtype: {sorted(widths)}, {sorted(map(str, dtypes))}")
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [int(p.shape[0]) for p in parts]).astype(np.int64)
        self.shape = (int(self.offsets[-1]), widths.pop())
        self.dtype = dtypes.pop()

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, selection) -> np.ndarray:
        if isinstance(selection, slice):
            start, stop, step = selection.indices(self.shape[0])
            if step != 1:
                raise IndexError("shard views take contiguous slices or row positions")
            pieces = []
            for part, offset in zip(self.parts, self.offsets[:-1]):
                lo, hi = max(start, offset), min(stop, offset + len(part))
                if lo < hi:
                    pieces.append(part[lo - offset:hi - offset])
            if len(pieces) == 1:
                return pieces[0]
            return np.concatenate(pieces) if pieces else np.empty((0, self.shape[1]), dtype=self.dtype)
        positions = np.asarray(selection, dtype=np.int64).reshape(-1)
        if positions.size and (positions.min() < 0 or positions.max() >= self.shape[0]):
            raise IndexError(f"row positions must lie in [0, {self.shape[0]})")
        out = np.empty((positions.size, self.shape[1]), dtype=self.dtype)
        which = np.searchsorted(self.offsets, positions, side="right") - 1
        for s in np.unique(which):
            mask = which == s
            out[mask] = self.parts[s][positions[mask] - self.offsets[s]]
        return out


def order_shards(indexes: Sequence[DenseIndex]) -> List[DenseIndex]:
    """The shards in the order their rows are numbered, checked to be one collection: every shard shares
    :data:`SHARED_KEYS` (IndexMismatchError naming two shards); shards that record ``meta["shard"]`` (the encode
    CLI's ``--shard-id/--shard-num``) are put in shard order and must be the complete set 0..num-1 of one corpus;
    others keep the order given."""
    if not indexes:
        raise ValueError("no shards")
    first = indexes[0]
    for index in indexes[1:]:
        for key in SHARED_KEYS:
            if index.meta.get(key) != first.meta.get(key):
                raise IndexMismatchError(f"{index.path}: {key} is {index.meta.get(key)!r}, but {first.path} has "
                                         f"{first.meta.get(key)!r}; shards must come from the same encoder run")
    infos = [index.meta.get("shard") for index in indexes]
    if all(infos):
        indexes = [index for _, index in sorted(zip([i["id"] for i in infos], indexes), key=lambda p: p[0])]
        infos = [index.meta["shard"] for index in indexes]
        num = infos[0]["num"]
        if [i["id"] for i in infos] != list(range(num)) or any(i["num"] != num for i in infos):
            raise ValueError(f"shards {[i['id'] for i in infos]} of {num}: need each shard id 0..{num - 1} once")
        if any(i.get("corpus") != infos[0].get("corpus") for i in infos):
            raise ValueError("the shards were encoded from different corpora")
    elif any(infos):
        raise ValueError("some shards record shard numbers and some do not; use shards of one run")
    return list(indexes)


def shard_paths(spec: Union[str, Path, Sequence]) -> List[Path]:
    """The index directories ``spec`` names: a list, a comma-separated string, one index directory, or a
    directory whose subdirectories holding a meta.json are the shards (in name order)."""
    if isinstance(spec, (list, tuple)):
        return [Path(p).expanduser() for p in spec]
    text = str(spec)
    if "," in text and not Path(text).expanduser().exists():
        return [Path(p.strip()).expanduser() for p in text.split(",") if p.strip()]
    path = Path(text).expanduser()
    if path.is_dir() and not (path / META_FILE).exists():
        subdirs = sorted(p for p in path.iterdir() if p.is_dir() and (p / META_FILE).is_file())
        if subdirs:
            return subdirs
    return [path]


class ShardedIndex(DenseIndex):
    """Several shard indexes as one: ``docids`` end to end, ``vectors`` a :class:`ConcatRows` view over their
    memory maps, ``shards`` the :class:`DenseIndex` of each and ``offsets`` where each one's rows start."""

    def __init__(self, path: Path, shards: Sequence[DenseIndex]):
        self.shards = order_shards(shards)
        seen: Dict[str, int] = {}
        docids: List[str] = []
        for s, shard in enumerate(self.shards):
            for docid in shard.docids:
                other = seen.setdefault(docid, s)
                if len(seen) == len(docids):   # not new: in this shard already or in an earlier one
                    where = (f"twice in {shard.path}" if other == s else
                             f"in two shards: {self.shards[other].path} and {shard.path}")
                    raise IndexMismatchError(f"docid {docid!r} is {where}")
                docids.append(docid)
        first = self.shards[0]
        meta = {k: v for k, v in first.meta.items() if k not in ("shard", "structures")}
        meta["num_docs"] = len(docids)
        meta["shards"] = [str(shard.path) for shard in self.shards]
        faiss = None
        if first.faiss_vectors is not first.vectors:
            faiss = ConcatRows([shard.faiss_vectors.stored for shard in self.shards])
        super().__init__(path, meta, docids, ConcatRows([shard.vectors.stored for shard in self.shards]), faiss)
        self._rows = {docid: i for i, docid in enumerate(docids)}
        self.offsets = self.vectors.stored.offsets[:-1].tolist()

    def __repr__(self) -> str:
        return (f"ShardedIndex({str(self.path)!r}, shards={len(self.shards)}, num_docs={self.num_docs}, "
                f"dimension={self.dimension}, dtype={self.storage_dtype!r}, encoder={self.meta.get('encoder')!r})")

    @property
    def structures(self) -> Dict:
        """The structures every shard has (each shard's own, built over its rows)."""
        names = set.intersection(*(set(shard.structures) for shard in self.shards))
        return {name: self.shards[0].structures[name] for name in sorted(names)}

    def has_structure(self, name: str) -> bool:
        return all(shard.has_structure(name) for shard in self.shards)

    def structure_file(self, name: str) -> Path:
        """The first shard's file of structure ``name``, once every shard is checked to have one (a ValueError
        naming the command that adds it to the first shard lacking it)."""
        return [shard.structure_file(name) for shard in self.shards][0]

    def record_structure(self, name: str, info: Dict) -> None:
        raise ValueError(f"{self.path}: structures are added to each shard: "
                         + "; ".join(shard.add_command(name) for shard in self.shards))


def open_index(spec: Union[str, Path, Sequence, DenseIndex]) -> DenseIndex:
    """A :class:`DenseIndex` for one index directory, or a :class:`ShardedIndex` for several (see
    :func:`shard_paths`).  IndexFormatError / IndexMismatchError in one line when malformed or incompatible."""
    if isinstance(spec, DenseIndex):
        return spec
    paths = shard_paths(spec)
    if not paths:
        raise IndexFormatError(f"{spec!r}: no index directories given")
    if len(paths) == 1:
        return DenseIndex.open(paths[0])
    if len(set(map(str, paths))) != len(paths):
        raise ValueError(f"{spec}: a shard is named twice")
    where = Path(str(spec)) if not isinstance(spec, (list, tuple)) and Path(str(spec)).is_dir() else paths[0].parent
    index = ShardedIndex(where, [DenseIndex.open(p) for p in paths])
    logger.info("searching %d shards as one index of %d documents", len(index.shards), index.num_docs)
    return index
