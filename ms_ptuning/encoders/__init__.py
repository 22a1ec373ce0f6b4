from .folding import FoldableEncoder, fold_encoders
from .prefix import PrefixEncoder
from .prompt import PromptEncoder

__all__ = ["FoldableEncoder", "PrefixEncoder", "PromptEncoder", "fold_encoders"]
