# lit configuration for the text-IR tests: `lit tests/lit` (tests/test_lit.py runs it from pytest).
# Each *.eir file carries its own `// RUN:` lines using edgecc-opt and filecheck.
import os
import sys
import tempfile

import lit.formats

config.name = "edgecc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".eir"]
config.excludes = ["Inputs"]
config.test_source_root = os.path.dirname(__file__)
# keep the source tree clean: outputs (%t) go to a temp dir unless EDGECC_LIT_OUT is set
config.test_exec_root = os.environ.get("EDGECC_LIT_OUT",
                                       os.path.join(tempfile.gettempdir(), "edgecc-lit"))

# edgecc-opt and filecheck are console scripts next to this Python; run them from there
bin_dir = os.path.dirname(sys.executable)
config.environment["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
for var in ("HOME", "NUMBA_CACHE_DIR", "EDGECC_SHARED", "EDGECC_DEBUG"):
    if var in os.environ:
        config.environment[var] = os.environ[var]
