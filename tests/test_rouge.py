"""Character-level ROUGE against values computed by hand (derivations in the comments)."""

import pytest

from ms_ptuning.rouge import characters, corpus_rouge, lcs_length, rouge_scores


def test_partial_overlap():
    # candidate 我爱北京 (4 chars), reference 我爱上海北京 (6 chars)
    # ROUGE-1: overlap 4 → P 4/4, R 4/6 → F = 2·1·(2/3) / (1 + 2/3) = 0.8
    # ROUGE-2: candidate {我爱, 爱北, 北京}, reference {我爱, 爱上, 上海, 海北, 北京} → overlap 2
    #          P 2/3, R 2/5 → F = 2·(4/15) / (16/15) = 0.5
    # ROUGE-L: LCS 我爱北京 = 4 → same P/R as ROUGE-1 → 0.8
    assert rouge_scores("我爱北京", "我爱上海北京") == pytest.approx({"rouge-1": 0.8, "rouge-2": 0.5, "rouge-l": 0.8})


def test_counts_are_clipped():
    # 的的的 vs 的是的: 的 occurs 3× vs 2× → unigram overlap 2 → P = R = 2/3 → F = 2/3
    # bigrams {的的 ×2} vs {的是, 是的} → 0; LCS 的的 = 2 → P = R = 2/3
    assert rouge_scores("的的的", "的是的") == pytest.approx({"rouge-1": 2 / 3, "rouge-2": 0.0, "rouge-l": 2 / 3})


def test_order_matters_for_bigrams_and_lcs_only():
    # 北京上海 vs 上海北京: same characters → ROUGE-1 = 1; bigrams share 北京, 上海 of 3 each → 2/3;
    # LCS is 2 (北京 or 上海) of 4 → 0.5
    assert rouge_scores("北京上海", "上海北京") == pytest.approx({"rouge-1": 1.0, "rouge-2": 2 / 3, "rouge-l": 0.5})


def test_identical_is_one_and_unrelated_is_zero():
    summary = "北京发布暴雨蓝色预警，提醒市民减少外出防范内涝。"
    assert rouge_scores(summary, summary) == {"rouge-1": 1.0, "rouge-2": 1.0, "rouge-l": 1.0}
    assert rouge_scores("中国女排三比一获胜", summary) == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}


def test_whitespace_and_case_are_ignored_empty_scores_zero():
    assert characters(" iPhone 7 发布 ") == list("iphone7发布")
    assert rouge_scores("IPHONE 7发布", "iphone7 发布")["rouge-2"] == 1.0
    assert rouge_scores("", "北京") == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}


def test_lcs_length():
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4  # textbook example (CLRS): BCBA
    assert lcs_length([], list("abc")) == 0


def test_corpus_score_is_the_mean_and_checks_lengths():
    scores = corpus_rouge(["我爱北京", "北京"], ["我爱上海北京", "北京"])
    assert scores == pytest.approx({"rouge-1": 0.9, "rouge-2": 0.75, "rouge-l": 0.9})
    with pytest.raises(ValueError, match="equally many"):
        corpus_rouge(["a"], [])
