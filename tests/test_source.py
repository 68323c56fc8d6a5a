"""show_source prints the package's code with docstrings cut to their first line."""

import ast
import inspect
import textwrap

import pytest

from qkv.multihead import MultiHeadAttention
from qkv.pooling import NadarayaWatson, fit_bandwidth
from qkv.source import source_text


@pytest.mark.parametrize("obj", [fit_bandwidth, NadarayaWatson, MultiHeadAttention.forward])
def test_cut_docstrings_keep_the_code_and_the_first_line(obj):
    full = textwrap.dedent(inspect.getsource(obj))
    short = source_text(obj)
    assert len(short.splitlines()) < len(full.splitlines()) or obj.__doc__ is None
    # the same code: equal syntax trees once docstrings are dropped from both
    def without_docstrings(code):
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.body and \
                    isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
                node.body = node.body[1:] or [ast.Pass()]
        return ast.dump(tree)
    assert without_docstrings(short) == without_docstrings(full)
    if obj.__doc__:
        assert obj.__doc__.strip().split("\n")[0].strip() in short


def test_full_docstrings_on_request():
    assert source_text(fit_bandwidth, docstrings=True) == \
        textwrap.dedent(inspect.getsource(fit_bandwidth)).rstrip()
