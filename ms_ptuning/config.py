"""What to tune and how: one dataclass shared by every head, backbone and the torch reference."""

from dataclasses import asdict, dataclass, fields

MODES = ("prefix", "prompt", "finetune")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
PROMPT_ENCODER_TYPES = ("lstm", "mlp", "embedding")


@dataclass
class PTuningConfig:
    """`prefix`: P-tuning v2 (per-layer key/value prefixes); `prompt`: continuous prompt embeddings before the
    input (a bare table as THUDM's P-tuning v2 `--prompt`, or P-tuning v1's LSTM/MLP encoder); `finetune`: no
    prompts, every weight trains. Backbones stay frozen in the two prompt modes; `freeze_backbone` freezes it
    in finetune mode too (head-only training, THUDM's `fix_bert` for NER, QA and COPA)."""

    mode: str = "prefix"
    pre_seq_len: int = 4
    prefix_projection: bool = False
    prefix_hidden_size: int = 512
    prefix_dropout: float = 0.1  # the reference applies hidden_dropout_prob to the prefix; 0 turns it off
    prompt_encoder_type: str = "embedding"
    classifier_dropout: float = 0.1
    num_labels: int = 2
    problem_type: str = "single_label_classification"
    freeze_backbone: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode != "finetune" and (not isinstance(self.pre_seq_len, int) or self.pre_seq_len <= 0):
            raise ValueError(f"pre_seq_len must be a positive integer in {self.mode} mode, got {self.pre_seq_len!r}")
        if self.prompt_encoder_type not in PROMPT_ENCODER_TYPES:
            raise ValueError(f"prompt_encoder_type must be one of {PROMPT_ENCODER_TYPES}, "
                             f"got {self.prompt_encoder_type!r}")
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {self.problem_type!r}")
        if self.num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {self.num_labels}")
        if self.problem_type == "regression" and self.num_labels != 1:
            raise ValueError(f"regression needs num_labels=1, got {self.num_labels}")
        for name in ("prefix_dropout", "classifier_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def trains_backbone(self) -> bool:
        return self.mode == "finetune" and not self.freeze_backbone

    @property
    def num_virtual_tokens(self) -> int:
        """Prompt/prefix positions the backbone sees in addition to the real tokens."""
        return 0 if self.mode == "finetune" else self.pre_seq_len

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PTuningConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown PTuningConfig fields {unknown}; known: {sorted(known)}")
        return cls(**values)


def uses_roberta_classification_head(model_type: str, config: PTuningConfig) -> bool:
    """THUDM fine-tunes (neither --prefix nor --prompt) through `AutoModelForSequenceClassification`, which for
    RoBERTa is `RobertaForSequenceClassification`: no pooler, a `RobertaClassificationHead` instead. Its
    prefix/prompt models and every other backbone classify the pooled output."""
    return config.mode == "finetune" and model_type == "roberta"
