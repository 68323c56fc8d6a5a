"""qkv: the shared, tested package of the course *Queries, Keys and Values*.

One module per chapter, layered in book order (a module imports only modules above it):

- :mod:`qkv.runtime`: device, seeding, budgets, threads (all chapters)
- :mod:`qkv.plot`: labelled heat maps and curves (all chapters)
- :mod:`qkv.source`: show the package's own source in a chapter
- :mod:`qkv.checks`: the argument checks every module shares (clear errors naming the argument)
- :mod:`qkv.lookup`: key-value lookup, from exact match to soft attention (chapter 1)
- :mod:`qkv.pooling`: Nadaraya-Watson kernel regression as attention pooling (chapter 2)
- :mod:`qkv.attention`: masks, masked softmax, dot-product, additive and bilinear attention (chapter 3)
- :mod:`qkv.alignment`: chapter 3's trained attention lab (learned alignments on string reversal)
- :mod:`qkv.multihead`: multi-head attention, readable and fused paths (chapter 4)
- :mod:`qkv.positional`: sinusoidal, learned and rotary encodings, ALiBi and T5 biases (chapter 5)
- :mod:`qkv.data`: synthetic tasks and Multi30k (chapters 5 and 6)
- :mod:`qkv.train`: the training loop chapters 5 and 6 share
- :mod:`qkv.transformer`, :mod:`qkv.seq2seq`, :mod:`qkv.decoding`: encoder and decoder stacks, the translation model, greedy and beam decoding with a key/value cache (chapter 6)
- :mod:`qkv.arithmetic`: chapter 5's experiments ("a+b=c"; digit sums beyond the trained length)
- :mod:`qkv.depth`: chapter 6's deep stacks with and without residual connections
- :mod:`qkv.metrics`, :mod:`qkv.checkpoints`, :mod:`qkv.translation`: sacreBLEU/chrF with intervals; checkpoints saved as sets and fetched by URL; the translation command line
- :mod:`qkv.geometry`: sphere, half-plane, Poincaré ball, Lorentz model, hyperbolic attention, trees (chapter 7)
- :mod:`qkv.report`: the measured figures of the whole book, for the results page
- :mod:`qkv.exercises`: exercise checkers, the student export, assignments and grading
"""

__version__ = "0.1.0"
