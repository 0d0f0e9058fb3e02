"""Atomic outputs: a file or directory is replaced whole, or left as it was."""
import pytest

from pyserini_hypencoder._fsutil import atomic_directory, atomic_file


def test_atomic_directory_replaces_whole_or_keeps_the_old(tmp_path):
    out = tmp_path / "index"
    out.mkdir()
    (out / "old").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(out) as tmp:
            (tmp / "new").write_text("2")
            raise RuntimeError("interrupted")
    assert [p.name for p in out.iterdir()] == ["old"]
    with atomic_directory(out) as tmp:
        (tmp / "new").write_text("2")
    assert [p.name for p in out.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["index"]   # no temporary or set-aside directories left


def test_atomic_file_replaces_whole_or_keeps_the_old(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(path) as f:
            f.write("half")
            raise KeyboardInterrupt
    assert path.read_text() == "old\n"
    with atomic_file(path) as f:
        f.write("new\n")
    assert path.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["run.trec"]
