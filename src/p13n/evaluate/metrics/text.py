"""Text metrics: ROUGE (rouge-score), BLEU (sacrebleu), METEOR (NLTK) and BERTScore (bert-score
with the bundled encoder), each configured as LaMP/LongLaMP's evaluation calls it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from p13n.evaluate.metrics.base import MetricResult, check_pairs, decomposed
from p13n.evaluate.metrics.resources import meteor_resources

# --- ROUGE: rouge-score configured as LaMP's eval/evaluation.py (HF evaluate "rouge") ---------

ROUGE_TYPES = {
    "rouge-1": "rouge1",
    "rouge-2": "rouge2",
    "rouge-l": "rougeL",
    "rouge-lsum": "rougeLsum",
}
_rouge_scorers: dict[str, Any] = {}


def rouge(predictions: Sequence[str], references: Sequence[str], rouge_type: str) -> MetricResult:
    """ROUGE F1 per example (rouge-score, no stemming, LaMP's strip), averaged over examples.

    ``rouge_type`` is rouge-score's name: rouge1, rouge2, rougeL or rougeLsum.
    """
    check_pairs(predictions, references)
    if rouge_type not in _rouge_scorers:
        from rouge_score import rouge_scorer

        _rouge_scorers[rouge_type] = rouge_scorer.RougeScorer([rouge_type], use_stemmer=False)
    scorer = _rouge_scorers[rouge_type]
    return decomposed(
        [
            float(scorer.score(ref.strip(), pred.strip())[rouge_type].fmeasure)
            for pred, ref in zip(predictions, references, strict=True)
        ]
    )


# --- BLEU: sacrebleu with HF evaluate "sacrebleu" defaults (LaMP's training-time metrics) ------


def bleu(predictions: Sequence[str], references: Sequence[str]) -> MetricResult:
    """Corpus BLEU on sacrebleu's 0-100 scale, with sentence BLEU per example."""
    check_pairs(predictions, references)
    import sacrebleu

    preds = [p.strip() for p in predictions]
    refs = [r.strip() for r in references]
    corpus = sacrebleu.corpus_bleu(preds, [refs])
    sentences = [
        float(sacrebleu.sentence_bleu(p, [r]).score) for p, r in zip(preds, refs, strict=True)
    ]
    return MetricResult(float(corpus.score), sentences)


# --- METEOR: NLTK's meteor_score as HF evaluate's meteor.py calls it (LongLaMP) --------------


def meteor(predictions: Sequence[str], references: Sequence[str]) -> MetricResult:
    """METEOR per example (NLTK, alpha=0.9, beta=3, gamma=0.5, WordNet 3.0), averaged."""
    check_pairs(predictions, references)
    from nltk.translate.meteor_score import meteor_score

    tokenize, wordnet = meteor_resources()
    return decomposed(
        [
            float(
                meteor_score(
                    [tokenize(ref.strip())],
                    tokenize(pred.strip()),
                    wordnet=wordnet,
                    alpha=0.9,
                    beta=3,
                    gamma=0.5,
                )
            )
            for pred, ref in zip(predictions, references, strict=True)
        ]
    )


# --- BERTScore with the bundled all-MiniLM-L6-v2 -------------------------------------------

_bert_lock = threading.Lock()
_bert_scorers: dict[str, Any] = {}


def _bert_scorer(device: str) -> Any:
    with _bert_lock:
        if device not in _bert_scorers:
            from bert_score import BERTScorer

            from p13n.encode.minilm import bundled_model_dir

            _bert_scorers[device] = BERTScorer(
                model_type=str(bundled_model_dir()),
                num_layers=6,
                idf=False,
                lang=None,
                rescale_with_baseline=False,
                device=device,
                batch_size=64,
            )
        return _bert_scorers[device]


def bertscore_minilm(
    predictions: Sequence[str], references: Sequence[str], device: str = "cpu"
) -> MetricResult:
    """BERTScore F1 per example with all-MiniLM-L6-v2's last layer, averaged.

    An empty (or blank) prediction or reference scores 0, bert-score's own rule; it is applied
    here because bert-score 0.3.13 crashes on empty text with transformers 5.
    """
    check_pairs(predictions, references)
    pairs = zip(predictions, references, strict=True)
    scored = [i for i, (pred, ref) in enumerate(pairs) if pred.strip() and ref.strip()]
    per_example = [0.0] * len(predictions)
    if scored:
        _, _, f1 = _bert_scorer(device).score(
            [predictions[i] for i in scored], [references[i] for i in scored]
        )
        for i, value in zip(scored, f1.tolist(), strict=True):
            per_example[i] = float(value)
    return decomposed(per_example)


__all__ = ["ROUGE_TYPES", "bertscore_minilm", "bleu", "meteor", "rouge"]
