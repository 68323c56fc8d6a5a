"""Small Sphinx fixes for the book (loaded through _config.yml's local_extensions).

sphinx-thebe 0.3.1 registers its inline configuration script twice under Sphinx 7, so every
page declares ``const THEBE_JS_URL`` twice and the browser logs a SyntaxError. This extension
drops duplicates (same file, or same inline body) from each page's script list.
"""


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
    # Early (priority 100): Sphinx stops calling html-page-context handlers at the first one
    # that returns a template name.
    app.connect("html-page-context", _drop_duplicate_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
