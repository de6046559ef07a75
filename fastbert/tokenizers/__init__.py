# placeholder until the tokenizers wing lands (replaced by the tokenizers-wing branch)
from ..auto_tokenizer import AutoTokenizer, TokenizersTokenizer, with_lowercase  # noqa: F401
from ..tokenizer import BertTokenizer  # noqa: F401
