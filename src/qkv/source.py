"""Show the package's own source in a chapter, so the book always prints the tested code."""

from __future__ import annotations

import ast
import inspect
import textwrap


def source_text(obj, docstrings: bool = False) -> str:
    """The source of a function or class, dedented; with ``docstrings=False`` each docstring
    is cut to its first line (what the object is for), so a listing shows the code it teaches.
    """
    code = textwrap.dedent(inspect.getsource(obj)).rstrip()
    if docstrings:
        return code
    lines = code.split("\n")
    spans = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                spans.append((first.lineno, first.end_lineno, first.col_offset, first.value.value))
    for start, end, indent, text in sorted(spans, reverse=True):  # bottom up: numbers stay valid
        summary = text.strip().split("\n")[0].strip()
        if end > start or summary != text.strip():
            lines[start - 1:end] = [" " * indent + f'"""{summary} (...)"""']
    return "\n".join(lines)


def show_source(*objects, docstrings: bool = False) -> None:
    """Display the source of functions or classes of ``qkv`` as a highlighted code block.

    Docstrings are cut to their first line unless ``docstrings=True`` (the full text is in the
    package, and ``help(obj)`` prints it). In Jupyter (and in the built book) the code is
    rendered as Markdown with Python syntax highlighting; elsewhere it is printed.
    """
    if not objects:
        raise ValueError("show_source needs at least one function or class")
    code = "\n\n".join(source_text(obj, docstrings) for obj in objects)
    try:
        from IPython.display import Markdown, display
    except ImportError:  # plain Python without IPython
        print(code)
        return
    display(Markdown(f"```python\n{code}\n```"))
