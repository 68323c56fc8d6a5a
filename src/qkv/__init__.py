"""qkv: the shared, tested package of the course *Queries, Keys and Values*.

One module per chapter, layered in book order (a module imports only modules above it):

- :mod:`qkv.runtime`: device, seeding, budgets, threads (all chapters)
- :mod:`qkv.plot`: labelled heat maps and curves (all chapters)
- :mod:`qkv.source`: show the package's own source in a chapter
- :mod:`qkv.lookup`: key-value lookup, from exact match to soft attention (chapter 1)
- :mod:`qkv.pooling`: Nadaraya-Watson kernel regression as attention pooling (chapter 2)
- :mod:`qkv.attention`: masks, masked softmax, dot-product and additive attention (chapter 3)
- :mod:`qkv.multihead`: multi-head attention, readable and fused paths (chapter 4)
- :mod:`qkv.positional`: sinusoidal, learned and rotary position encodings (chapter 5)
- :mod:`qkv.data`: synthetic tasks and Multi30k (chapters 5 and 6)
- :mod:`qkv.train`: the training loop chapters 5 and 6 share
- :mod:`qkv.transformer`, :mod:`qkv.seq2seq`, :mod:`qkv.decoding`: encoder and decoder stacks, the translation model, greedy and beam decoding with a key/value cache (chapter 6)
- :mod:`qkv.arithmetic`: chapter 5's experiment (encoder and causal models on "a+b=c")
- :mod:`qkv.metrics`, :mod:`qkv.translation`: sacreBLEU/chrF; the translation command line
- :mod:`qkv.geometry`: sphere, half-plane, Poincaré ball, Lorentz model, hyperbolic attention, trees (chapter 7)
- :mod:`qkv.report`: the measured figures of the whole book, for the results page
- :mod:`qkv.exercises`: exercise checkers and the student export (all chapters)
"""

__version__ = "0.1.0"
