"""Run every test suite: the C++ kernel tests (built with CMake, run by CTest) and the Python suite.

Usage: python tests/run_all.py [extra pytest arguments]
Exits non-zero if either suite fails. Needs cmake and ninja (both in the ``test`` extra).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "cpp-tests"


def run(command: list[str], **kwargs) -> int:
    print("+", " ".join(command), flush=True)
    return subprocess.call(command, **kwargs)


def cpp_suite() -> int:
    cmake = shutil.which("cmake")
    if cmake is None:
        print("cmake not found: install the test extra (pip install '.[test]')", file=sys.stderr)
        return 1
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = [cmake, "-S", str(ROOT), "-B", str(BUILD), *generator, "-DCMAKE_BUILD_TYPE=Release",
                 "-DNNCORE_BUILD_TESTS=ON", "-DNNCORE_BUILD_PYTHON=OFF"]
    if run(configure) != 0:
        return 1
    if run([cmake, "--build", str(BUILD), "--parallel", str(os.cpu_count() or 2)]) != 0:
        return 1
    ctest = shutil.which("ctest") or str(Path(cmake).with_name("ctest"))
    return run([ctest, "--test-dir", str(BUILD), "--output-on-failure"])


def python_suite(extra: list[str]) -> int:
    return run([sys.executable, "-m", "pytest", str(ROOT / "tests" / "python"), *extra], cwd=ROOT)


def main() -> int:
    cpp = cpp_suite()
    python = python_suite(sys.argv[1:])
    print(f"C++ suite: {'passed' if cpp == 0 else 'FAILED'}; Python suite: {'passed' if python == 0 else 'FAILED'}")
    return 0 if cpp == 0 and python == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
