"""The character set: encoding text for the attention window, and what happens to other characters.

Index 0 is reserved for padding; character ``i`` of ``Alphabet.chars`` is encoded as ``i + 1``.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .errors import HandsynthError

# Common typographic characters mapped to what the corpus contains.
TYPOGRAPHIC = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u2032": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
    "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\t": " ",
}


class Alphabet:
    """An ordered set of characters the model knows."""

    def __init__(self, chars: Iterable[str]):
        try:
            chars = sorted(set(chars))
        except TypeError:
            raise HandsynthError("an alphabet is a string of characters") from None
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise HandsynthError("alphabet entries must be single characters")
        self.chars = "".join(chars)
        self._index = {c: i + 1 for i, c in enumerate(self.chars)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "Alphabet":
        return cls(set("".join(texts)) | {" "})

    @property
    def size(self) -> int:
        """Number of encoded symbols including the padding index 0."""
        return len(self.chars) + 1

    def normalize(self, text: str, skip_unknown: bool = False) -> str:
        """Map typographic characters, collapse runs of spaces; unknown characters are an error
        naming them, or dropped when ``skip_unknown``."""
        text = "".join(TYPOGRAPHIC.get(c, c) for c in text)
        unknown = sorted({c for c in text if c not in self._index})
        if unknown:
            if not skip_unknown:
                shown = " ".join(repr(c) for c in unknown)
                raise HandsynthError(
                    f"the model cannot write these characters: {shown}; "
                    "remove them or pass --skip-unknown (skip_unknown=True) to drop them")
            text = "".join(c for c in text if c in self._index)
        return " ".join(text.split())

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.array([self._index[c] for c in text], dtype=np.int64)
        except KeyError as e:
            raise HandsynthError(f"the model cannot write the character {e.args[0]!r}") from None

    def codes_in(self, old_chars: str) -> np.ndarray:
        """A warm start on a grown alphabet: each of this alphabet's codes (0, the padding, first)
        -> its code in the alphabet of ``old_chars`` (the same encoding), -1 for a character that
        one lacks. Every old character must be here."""
        if not set(old_chars) <= set(self.chars):
            raise HandsynthError("warm start: the new alphabet must hold every character of the old one")
        old = {c: i + 1 for i, c in enumerate(old_chars)}
        return np.array([0] + [old.get(c, -1) for c in self.chars], np.int64)

    def decode(self, codes: Iterable[int]) -> str:
        return "".join(self.chars[i - 1] for i in codes if i > 0)

    def __contains__(self, c: str) -> bool:
        return c in self._index

    def __eq__(self, other) -> bool:
        return isinstance(other, Alphabet) and other.chars == self.chars

    def __repr__(self) -> str:
        return f"Alphabet({self.chars!r})"
