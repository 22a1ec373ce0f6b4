import copy

from torch import nn
from torch.nn import functional as F
from transformers.models.roberta.modeling_roberta import RobertaClassificationHead

from ...config import PTuningConfig, uses_roberta_classification_head
from ..layers import linear, normal_linears
from .base import PTuningHead
from .context_pooler import pooler_for


def sequence_classification_loss(logits, labels, problem_type):
    if problem_type == "regression":
        return F.mse_loss(logits.reshape(-1), labels.reshape(-1).to(logits.dtype))
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits, labels.long())
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class SequenceClassifier(PTuningHead):
    head_name = "sequence_classification"

    def __init__(self, backbone, config: PTuningConfig):
        roberta_head = uses_roberta_classification_head(backbone.config.model_type, config)
        super().__init__(backbone, config, sequence_output_only=roberta_head)
        self.roberta_head = roberta_head
        if self.roberta_head:  # Hugging Face's own head, as THUDM's fine-tuning path builds it
            head_config = copy.deepcopy(self.backbone.config)
            head_config.num_labels, head_config.classifier_dropout = config.num_labels, config.classifier_dropout
            self.classifier = RobertaClassificationHead(head_config)
            normal_linears(self.classifier, self.init_std)
            return
        self.pooler = pooler_for(self.backbone)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = linear(self.backbone.config.hidden_size, config.num_labels, self.init_std)

    def logits(self, sequence, pooled):
        if self.roberta_head:
            return self.classifier(sequence)
        if self.pooler is not None:
            pooled = self.pooler(sequence)
        return self.classifier(self.dropout(pooled))

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        sequence, pooled = self.encoder(input_ids, attention_mask, token_type_ids)
        logits = self.logits(sequence, pooled)
        loss = None if labels is None else sequence_classification_loss(logits, labels, self.config.problem_type)
        return loss, logits
