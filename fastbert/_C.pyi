"""Type stubs of fastbert._C, the C++ BERT WordPiece tokenizer (wrapped by fastbert.tokenizers.BertTokenizer)."""
from collections.abc import Sequence
from typing import Any

class Encodings:
    """The rows of one encode_batch call, kept so that per-token details can be read after the call."""
    @property
    def rows(self) -> int: ...
    @property
    def n_sequences(self) -> int: ...
    def row(self, row: int, field: str) -> list[Any]: ...
    def word_ids(self, row: int) -> list[int | None]: ...
    def sequence_ids(self, row: int) -> list[int | None]: ...
    def row_length(self, row: int) -> int: ...
    def sample_of(self, row: int) -> int: ...

class Tokenizer:
    def __init__(
        self,
        vocab: Sequence[tuple[str, int]],
        added_tokens: Sequence[tuple[str, int, bool, bool, bool, bool, bool]],
        unk_id: int,
        cls_id: int,
        sep_id: int,
        pad_id: int,
        pad_type_id: int = 0,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        handle_chinese_chars: bool = True,
        clean_text: bool = True,
        continuing_subword_prefix: str = "##",
        max_input_chars_per_word: int = 100,
        double_sep: bool = False,
    ) -> None: ...
    def encode_batch(
        self,
        text: Sequence[str] | Sequence[Sequence[str]],
        text_pair: Sequence[str] | Sequence[Sequence[str]] | None = None,
        is_split_into_words: bool = False,
        add_special_tokens: bool = True,
        truncation: str = "do_not_truncate",
        max_length: int | None = None,
        stride: int = 0,
        truncation_side: str = "right",
        return_overflowing_tokens: bool = False,
        padding: str = "do_not_pad",
        padding_side: str = "right",
        pad_to_multiple_of: int | None = None,
        split_special_tokens: bool = False,
        fields: Sequence[str] = ("input_ids", "token_type_ids", "attention_mask"),
        return_length: bool = False,
        as_numpy: bool = False,
        num_threads: int = 0,
    ) -> tuple[dict[str, Any], Encodings]: ...
    def token_to_id(self, token: str) -> int | None: ...
    def normalize(self, text: str) -> str: ...
