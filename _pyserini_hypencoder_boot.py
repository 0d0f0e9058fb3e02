"""Interpreter start-up hook of pyserini-hypencoder (imported by ``pyserini_hypencoder-java.pth``).

Runs ``pyserini_hypencoder/_java.py`` (standard library only) in every Python process of the
environment, so that plain ``python -m pyserini.index.lucene``, ``pyserini.search.lucene`` and
``pyserini.eval.trec_eval`` find Java 21+ too.  It locates the package without importing it
(no torch, no Pyserini), costs a few milliseconds and never raises.  See docs/java.md.
"""


def _boot() -> None:
    import os
    import sys
    from importlib.util import find_spec, module_from_spec, spec_from_file_location

    if os.environ.get("PYSERINI_HYPENCODER_JAVA", "").strip().lower() in ("0", "off", "no", "false"):
        return
    # A private module name: the package itself is not imported here (it may pull in torch), and importing it
    # later loads its own pyserini_hypencoder._java, whose configure_java() then finds the work done.
    name = "_pyserini_hypencoder_java"
    module = sys.modules.get(name)
    if module is None:
        package = find_spec("pyserini_hypencoder")
        if package is None or not package.submodule_search_locations:
            return
        path = os.path.join(list(package.submodule_search_locations)[0], "_java.py")
        spec = spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            return
        module = module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    module.configure_java()


try:
    _boot()
except Exception:  # a start-up hook must never break the interpreter
    pass
