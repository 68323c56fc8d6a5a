"""Data sets of chapters 5 and 6, one module each.

- :mod:`qkv.data.synthetic`: the arithmetic task ("a+b=c", "a-b=c") and copy/reverse tasks.
- :mod:`qkv.data.multi30k`: the Multi30k German-English corpus, offline-first and checksummed.
- :mod:`qkv.data.text`: subword tokenizer and length-bucketed batches for translation.
"""
