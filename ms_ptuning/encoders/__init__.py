from .folding import FoldableEncoder, compile_encoders, fold_encoders
from .prefix import PrefixEncoder
from .prompt import PromptEncoder

__all__ = ["FoldableEncoder", "PrefixEncoder", "PromptEncoder", "compile_encoders", "fold_encoders"]
