"""Source code as what it does: a digest that comments, docstrings and formatting never change.

Used for a plugin's version when it has no distribution (``registry.plugin_origin``) and by the
harness for the code part of model and evaluation ids (``bench.plan.code``).
"""
from __future__ import annotations

import ast
import hashlib


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def normalised_tree(source: bytes | str, filename: str = "<source>") -> ast.AST:
    """The parsed source without docstrings (comments and formatting are gone with parsing)."""
    return _strip_docstrings(ast.parse(source, filename=filename))


def source_digest(tree: ast.AST) -> str:
    """16 hex characters of sha256 over the tree's structure (no positions)."""
    dump = ast.dump(tree, annotate_fields=False, include_attributes=False)
    return hashlib.sha256(dump.encode()).hexdigest()[:16]
