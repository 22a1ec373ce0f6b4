"""Benchmark cases: backbone sizes, P-tuning settings, batch shapes. Pure data, shared by both workers."""

BERT_BASE = dict(model_type="bert", vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512)
GPT2_SMALL = dict(model_type="gpt2", vocab_size=21128, n_embd=768, n_layer=12, n_head=12, n_positions=1024)
TINY_BERT = dict(model_type="bert", vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=64)

CASES = {
    "bert_base_prefix": dict(backbone=BERT_BASE, head="sequence_classification", mode="prefix", pre_seq_len=16,
                             batch_size=8, seq_len=128),
    "bert_base_prompt": dict(backbone=BERT_BASE, head="sequence_classification", mode="prompt", pre_seq_len=16,
                             batch_size=8, seq_len=128),
    "bert_base_finetune": dict(backbone=BERT_BASE, head="sequence_classification", mode="finetune", pre_seq_len=16,
                               batch_size=8, seq_len=128),
    "gpt2_small_prefix": dict(backbone=GPT2_SMALL, head="causal_lm", mode="prefix", pre_seq_len=16,
                              batch_size=2, seq_len=256),
    # millisecond steps: timed 50 at a time (see benchmarks/run.py)
    "tiny_prefix": dict(backbone=TINY_BERT, head="sequence_classification", mode="prefix", pre_seq_len=4,
                        batch_size=2, seq_len=8, round_steps=50),
}
DEFAULT_CASES = tuple(CASES)


def make_batch(case: dict, seed: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (case["batch_size"], case["seq_len"])
    input_ids = rng.integers(5, case["backbone"]["vocab_size"], shape).astype(np.int64)
    batch = {"input_ids": input_ids, "attention_mask": np.ones(shape, np.int64)}
    if case["head"] == "causal_lm":
        batch["labels"] = input_ids.copy()
    else:
        batch["labels"] = rng.integers(0, 2, case["batch_size"]).astype(np.int64)
    return batch
