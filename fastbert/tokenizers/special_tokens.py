"""The named special tokens ([CLS], [SEP], <s>, ...) as transformers exposes them: the token attributes' ids,
``special_tokens_map``, ``all_special_tokens`` and ``all_special_ids``."""
from __future__ import annotations

# transformers' named special tokens, in its order.
SPECIAL_TOKENS_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                             "mask_token")
# Those of BERT's WordPiece tokenizer.
BERT_SPECIALS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class SpecialTokens:
    """Mixin: the special tokens' ids and lists. Reads the host's token attributes (``cls_token``... None when
    absent), ``extra_special_tokens`` and ``convert_tokens_to_ids``."""

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.convert_tokens_to_ids(token)

    bos_token_id = property(lambda self: self._id(self.bos_token))
    eos_token_id = property(lambda self: self._id(self.eos_token))
    unk_token_id = property(lambda self: self._id(self.unk_token))
    sep_token_id = property(lambda self: self._id(self.sep_token))
    pad_token_id = property(lambda self: self._id(self.pad_token))
    cls_token_id = property(lambda self: self._id(self.cls_token))
    mask_token_id = property(lambda self: self._id(self.mask_token))

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in SPECIAL_TOKENS_ATTRIBUTES if getattr(self, name) is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        """Named special tokens (transformers' order), then the extra ones."""
        out: list[str] = []
        for token in [*self.special_tokens_map.values(), *self.extra_special_tokens]:
            if token not in out:
                out.append(token)
        return out

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)
