"""Type stubs of fastbert._C, the C++ BERT WordPiece tokenizer (wrapped by fastbert.tokenizer.BertTokenizer)."""
from collections.abc import Sequence
from typing import Any

class Tokenizer:
    def __init__(
        self,
        vocab: Sequence[tuple[str, int]],
        added_tokens: Sequence[tuple[str, int]],
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
    ) -> None: ...
    def encode_batch(
        self,
        text: Sequence[str],
        text_pair: Sequence[str] | None = None,
        add_special_tokens: bool = True,
        truncation: str = "do_not_truncate",
        max_length: int | None = None,
        padding: str = "do_not_pad",
        pad_to_multiple_of: int | None = None,
        return_offsets: bool = False,
        as_numpy: bool = False,
        num_threads: int = 0,
    ) -> dict[str, Any]: ...
    def token_to_id(self, token: str) -> int | None: ...
