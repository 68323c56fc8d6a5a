"""qkv: the shared, tested package of the course *Queries, Keys and Values*.

One module per chapter, layered in book order (a module imports only modules above it):

- :mod:`qkv.runtime`: device, seeding, budgets, threads (all chapters)
- :mod:`qkv.plot`: labelled heat maps and curves (all chapters)
- :mod:`qkv.source`: show the package's own source in a chapter
- :mod:`qkv.lookup`: key-value lookup, from exact match to soft attention (chapter 1)
- :mod:`qkv.pooling`: Nadaraya-Watson kernel regression as attention pooling (chapter 2)
- :mod:`qkv.exercises`: exercise checkers and the student export (all chapters)
"""

__version__ = "0.1.0"
