"""Small Sphinx fixes for the book (loaded through _config.yml's local_extensions).

* Numbers by chapter: without a numbered table of contents Sphinx counts figures, exercises
  and theorems through the whole book (chapter 6 began at "Fig. 36"). Chapter files are named
  ``chapters/NN_name``, so each figure, exercise or theorem gets ``(NN, i)``: "Fig. 6.1",
  "Exercise 6.3", in captions and in references alike.
* Bibliography labels by author and year ("Vaswani et al., 2017"), like the citations in the
  text, instead of pybtex's alpha labels ("[VSP+17]", "[EFSimaanS16]"): the ``authoryear``
  style, selected by ``bibtex_default_style`` in ``_config.yml``.
* sphinx-thebe 0.3.1 registers its inline configuration script twice under Sphinx 7, so every
  page declares ``const THEBE_JS_URL`` twice and the browser logs a SyntaxError; duplicates
  (same file, or same inline body) are dropped from each page's script list.
"""

import codecs
import re
from collections import Counter

import latexcodec  # noqa: F401  (registers the "ulatex" codec, which turns LaTeX accents into letters)

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle

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


def _plain(latex: str) -> str:
    return codecs.decode(latex, "ulatex").replace("{", "").replace("}", "")


def _surname(person) -> str:
    return _plain(" ".join(person.last_names))


def _author_year(entry) -> str:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_surname(person) for person in people]
    if not names:
        who = _plain(entry.fields.get("title", entry.key))
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} & {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabels(BaseLabelStyle):
    """"Surname, year", "A & B, year" or "A et al., year"; a, b, ... after the year when two
    entries would share a label."""

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [_author_year(entry) for entry in entries]
        repeated, seen = Counter(labels), Counter()
        for label in labels:
            if repeated[label] > 1:
                seen[label] += 1
                label += "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            yield label


class AuthorYearStyle(PlainStyle):
    default_label_style = "authoryear"


def setup(app):
    register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels)
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    # Late (priority 900): after Sphinx's table-of-contents collector has assigned the numbers.
    app.connect("env-get-updated", _number_by_chapter, priority=900)
    # Early (priority 100): Sphinx stops calling html-page-context handlers at the first one
    # that returns a template name.
    app.connect("html-page-context", _drop_duplicate_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
