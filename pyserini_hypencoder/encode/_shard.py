"""``--shard-id I --shard-num N``: which contiguous slice of a corpus one encoding run takes."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    """Shard ``id`` of ``num``: documents [start, stop) of a corpus of ``total`` (balanced contiguous slices)."""
    id: int
    num: int
    total: int

    @property
    def start(self) -> int:
        return self.total * self.id // self.num

    @property
    def stop(self) -> int:
        return self.total * (self.id + 1) // self.num

    @property
    def size(self) -> int:
        return self.stop - self.start


def check_shard(shard_id: int, shard_num: int) -> None:
    if shard_num < 1:
        raise ValueError(f"--shard-num must be at least 1, got {shard_num}")
    if not 0 <= shard_id < shard_num:
        raise ValueError(f"--shard-id must lie in 0..{shard_num - 1} for --shard-num {shard_num}, got {shard_id}")
