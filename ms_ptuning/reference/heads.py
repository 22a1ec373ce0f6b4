"""Reference token classification, question answering and multiple choice heads (real torch)."""

from torch import nn
from torch.nn import functional as F

from ..config import PTuningConfig
from .modeling import PromptedBackbone, drop_pooler, pooler_for


class TokenClassifier(nn.Module):
    def __init__(self, backbone, config: PTuningConfig):
        super().__init__()
        self.encoder = PromptedBackbone(drop_pooler(backbone), config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(backbone.config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        sequence, _ = self.encoder(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(sequence))
        if labels is None:
            return None, logits
        # the mask holds the real tokens only: the reference's prefix part of it is sliced off before the loss
        targets = labels.reshape(-1).long().masked_fill(attention_mask.reshape(-1) != 1, -100)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, ignore_index=-100), logits


class QuestionAnswering(nn.Module):
    def __init__(self, backbone, config: PTuningConfig):
        super().__init__()
        self.encoder = PromptedBackbone(drop_pooler(backbone), config)
        self.qa_outputs = nn.Linear(backbone.config.hidden_size, 2)

    def forward(self, input_ids, attention_mask, token_type_ids=None, start_positions=None, end_positions=None):
        sequence, _ = self.encoder(input_ids, attention_mask, token_type_ids)
        start_logits, end_logits = (part.squeeze(-1) for part in self.qa_outputs(sequence).split(1, dim=-1))
        if start_positions is None or end_positions is None:
            return None, (start_logits, end_logits)
        ignored = start_logits.shape[1]
        start_loss = F.cross_entropy(start_logits, start_positions.long().clamp(0, ignored), ignore_index=ignored)
        end_loss = F.cross_entropy(end_logits, end_positions.long().clamp(0, ignored), ignore_index=ignored)
        return (start_loss + end_loss) / 2, (start_logits, end_logits)


class MultipleChoice(nn.Module):
    def __init__(self, backbone, config: PTuningConfig):
        super().__init__()
        self.pooler = pooler_for(backbone)
        self.encoder = PromptedBackbone(backbone, config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(backbone.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        batch, choices, length = input_ids.shape
        flat = [None if x is None else x.reshape(batch * choices, length)
                for x in (input_ids, attention_mask, token_type_ids)]
        sequence, pooled = self.encoder(*flat)
        if self.pooler is not None:
            pooled = self.pooler(sequence)
        logits = self.classifier(self.dropout(pooled)).reshape(batch, choices)
        return (None if labels is None else F.cross_entropy(logits, labels.long())), logits


HEADS = {"token_classification": TokenClassifier, "question_answering": QuestionAnswering,
         "multiple_choice": MultipleChoice}
