"""Small Sphinx fixes for the book (loaded through _config.yml's local_extensions).

* Numbers by chapter: without a numbered table of contents Sphinx counts figures, exercises
  and theorems through the whole book (chapter 6 began at "Fig. 36"). Chapter files are named
  ``chapters/NN_name``, so each figure, exercise or theorem gets ``(NN, i)``: "Fig. 6.1",
  "Exercise 6.3", in captions and in references alike.
* sphinx-thebe 0.3.1 registers its inline configuration script twice under Sphinx 7, so every
  page declares ``const THEBE_JS_URL`` twice and the browser logs a SyntaxError; duplicates
  (same file, or same inline body) are dropped from each page's script list.
"""

import re

_CHAPTER = re.compile(r"^chapters/(\d+)_")


def _number_by_chapter(app, env):
    renumbered = []
    for docname, by_type in env.toc_fignumbers.items():
        match = _CHAPTER.match(docname)
        if not match:
            continue
        chapter = int(match.group(1))
        for numbers in by_type.values():
            in_order = sorted(numbers, key=numbers.get)
            for position, node_id in enumerate(in_order, start=1):
                numbers[node_id] = (chapter, position)
        renumbered.append(docname)
    return renumbered  # pages to write again (cheap), so no page keeps an old number


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        filename = getattr(script, "filename", script) or ""  # inline scripts: None or ""
        key = (str(filename), tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique  # in place: the builder and other handlers share this list


def setup(app):
    # Late (priority 900): after Sphinx's table-of-contents collector has assigned the numbers.
    app.connect("env-get-updated", _number_by_chapter, priority=900)
    # Early (priority 100): Sphinx stops calling html-page-context handlers at the first one
    # that returns a template name.
    app.connect("html-page-context", _drop_duplicate_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
