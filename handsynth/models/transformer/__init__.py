"""The transformer family (in progress): tokenizer.

Not a family yet: it exports no ``Model``, so the registry (``handsynth.checkpoint``) does not
list it. ``tokenizer.PolarTokenizer`` turns pen offsets into the reference design's joint polar
tokens and back.
"""
