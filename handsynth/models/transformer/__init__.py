"""The transformer family: a GPT-style decoder over polar pen tokens with cross-attention to the
text (``network.Transformer``, exported as ``Model``) and its tokenizer
(``tokenizer.PolarTokenizer``)."""
from .network import Transformer as Model

__all__ = ["Model"]
