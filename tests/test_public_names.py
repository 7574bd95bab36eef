"""The package's public names: what ``import django_rtcstream`` offers, at run time and to type checkers."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import django_rtcstream


def _type_checking_imports() -> dict[str, str]:
    """name -> module of each ``from module import name as name`` under ``if TYPE_CHECKING:``."""
    tree = ast.parse(Path(django_rtcstream.__file__).read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module is not None
                for alias in stmt.names:
                    assert alias.asname == alias.name, f"{alias.name} is not re-exported"
                    found[alias.name] = stmt.module
    return found


def test_type_checkers_see_every_lazily_exported_name_from_its_own_module():
    assert _type_checking_imports() == django_rtcstream._EXPORTS


def test_every_lazily_exported_name_is_the_object_its_module_defines():
    for name, module in django_rtcstream._EXPORTS.items():
        assert getattr(django_rtcstream, name) is getattr(importlib.import_module(module), name)
    assert set(django_rtcstream.__all__) == {"__version__", *django_rtcstream._EXPORTS}
