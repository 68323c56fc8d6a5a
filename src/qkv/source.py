"""Show the package's own source in a chapter, so the book always prints the tested code."""

from __future__ import annotations

import inspect


def show_source(*objects) -> None:
    """Display the source of functions or classes of ``qkv`` as a highlighted code block.

    In Jupyter (and in the built book) the code is rendered as Markdown with Python syntax
    highlighting; elsewhere it is printed.
    """
    if not objects:
        raise ValueError("show_source needs at least one function or class")
    code = "\n\n".join(inspect.getsource(obj).rstrip() for obj in objects)
    try:
        from IPython.display import Markdown, display
    except ImportError:  # plain Python without IPython
        print(code)
        return
    display(Markdown(f"```python\n{code}\n```"))
