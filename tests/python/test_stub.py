"""The hand-written stub of the compiled module must list exactly what the module exports."""

import ast
from pathlib import Path

import nncore
from nncore import _core


def test_stub_names_match_the_compiled_module():
    stub = Path(nncore.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    stubbed = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    exported = {name for name in dir(_core) if not name.startswith("_")}
    assert stubbed == exported
