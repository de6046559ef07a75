"""Added tokens: tokens matched in the text before WordPiece and kept whole (special tokens among them), with the
flags of ``tokenizers.AddedToken``, and the ``AddedVocabulary`` of a WordPiece tokenizer (``add_tokens``,
``add_special_tokens``, the ids they get). The C++ core matches them; this module only keeps the table.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .errors import InputTypeError
from .special_tokens import BERT_SPECIALS


class AddedToken(NamedTuple):
    """A token matched in the text before WordPiece and kept whole, with the flags of tokenizers' ``AddedToken``:
    ``single_word`` (no word character may touch it), ``lstrip``/``rstrip`` (it takes the whitespace on its
    left/right), ``normalized`` (matched in the normalized text), ``special`` (dropped by ``skip_special_tokens``)."""
    content: str
    id: int
    single_word: bool = False
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = False
    special: bool = False


def to_added_token(token, index: int | None, *, special: bool | None = None) -> AddedToken:
    """An AddedToken from a str, a mapping (serialized AddedToken) or an object with AddedToken's attributes.
    Flags left unset take tokenizers' defaults (normalized = not special)."""
    if isinstance(token, AddedToken):
        return token if index is None else token._replace(id=index)
    if isinstance(token, str):
        fields = {"content": token}
    elif isinstance(token, Mapping):
        fields = dict(token)
    elif hasattr(token, "content"):
        fields = {k: getattr(token, k) for k in ("content", "single_word", "lstrip", "rstrip", "normalized", "special")
                  if hasattr(token, k)}
    else:
        raise InputTypeError(f"an added token must be a str, a dict or an AddedToken, not {type(token).__name__}")
    is_special = bool(fields.get("special", False) if special is None else special or fields.get("special", False))
    content = fields["content"]
    if not isinstance(content, str):
        raise InputTypeError(f"added token content must be str, not {type(content).__name__}")
    return AddedToken(content, -1 if index is None else int(index), bool(fields.get("single_word", False)),
                      bool(fields.get("lstrip", False)), bool(fields.get("rstrip", False)),
                      bool(fields.get("normalized", not is_special)), is_special)


def token_content(value) -> str | None:
    """The text of a special token given as a str, a serialized AddedToken (dict) or an AddedToken object."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return value.get("content")  # transformers' serialized AddedToken
    return str(getattr(value, "content", value))


def read_added_tokens(added_tokens: Sequence) -> dict[str, AddedToken]:
    """Content -> AddedToken of a tokenizer's ``added_tokens`` argument: ``AddedToken``s, serialized AddedToken
    dicts (with ``id``), or legacy ``(content, id)`` pairs (matched verbatim)."""
    added: dict[str, AddedToken] = {}
    for token in added_tokens:
        if isinstance(token, tuple) and not isinstance(token, AddedToken):
            content, index = token  # legacy (content, id): matched verbatim
            spec = AddedToken(content, int(index), normalized=False)
        else:
            index = token.get("id") if isinstance(token, Mapping) else getattr(token, "id", None)
            spec = to_added_token(token, index)
        added[spec.content] = spec
    return added


class AddedVocabulary:
    """Mixin: the added tokens of a WordPiece tokenizer, as tokenizers' ``AddedVocabulary``. Keeps the host's
    ``_added`` (content -> AddedToken) beside its ``_vocab`` (token -> id) and calls its ``_build()`` after a
    change, so that the C++ core matches the new tokens."""

    def _register_tokens(self, tokens, replace: bool = False) -> int:
        """Adds (token, special) entries, as tokenizers' AddedVocabulary: an existing vocabulary id is reused, else
        the next free id. A known added token keeps its id; with `replace` it takes the new flags (a special token
        stays special). Returns how many entries were added or changed."""
        new = 0
        for token, special in tokens:
            index = self._vocab.get(token_content(token))
            spec = to_added_token(token, index, special=special)
            old = self._added.get(spec.content)
            if old is not None:
                updated = spec._replace(id=old.id, special=old.special or spec.special) if replace else \
                    old._replace(special=old.special or special)
                new += updated != old and replace
                self._added[spec.content] = updated
                continue
            if spec.id < 0:
                spec = spec._replace(id=max([len(self._vocab) - 1, *self._vocab.values(),
                                             *(t.id for t in self._added.values())]) + 1)
            self._added[spec.content] = spec
            new += 1
        return new

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        return {t.id: t for t in sorted(self._added.values(), key=lambda t: t.id)}

    def get_added_vocab(self) -> dict[str, int]:
        return {t.content: t.id for t in sorted(self._added.values(), key=lambda t: t.id)}

    def add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        """Adds tokens (str or AddedToken-like; str ones are normalized unless special) kept whole when they
        appear in the text. With special_tokens=True, tokenizers.AddedToken objects are marked special in place,
        as transformers does. Returns how many were added or changed."""
        if isinstance(new_tokens, (str, AddedToken)) or not isinstance(new_tokens, Sequence):
            new_tokens = [new_tokens]
        if special_tokens:
            for token in new_tokens:
                if not isinstance(token, (str, Mapping, AddedToken)) and hasattr(token, "special"):
                    # as tokenizers' add_special_tokens: the caller's AddedToken becomes special, and a
                    # `normalized` it was not given then defaults to False
                    token.special = True
        added = self._register_tokens([(t, special_tokens) for t in new_tokens], replace=True)
        self._build()
        return added

    def add_special_tokens(self, special_tokens_dict: Mapping[str, Any]) -> int:
        """Sets named special tokens (e.g. ``{"cls_token": "<s>"}``) and adds ``extra_special_tokens`` /
        ``additional_special_tokens``; returns how many tokens were new."""
        new = 0
        for key, value in special_tokens_dict.items():
            if key in ("extra_special_tokens", "additional_special_tokens"):
                new += self.add_tokens(list(value), special_tokens=True)
            elif key in BERT_SPECIALS:
                new += self._register_tokens([(value, True)])
                setattr(self, key, token_content(value))
                self._build()
            else:
                raise ValueError(f"{key!r} is not a special token of BERT ({', '.join(BERT_SPECIALS)}, "
                                 "extra_special_tokens)")
        return new
