from .prefix import PrefixEncoder
from .prompt import PromptEncoder

__all__ = ["PrefixEncoder", "PromptEncoder"]
