"""What a benchmark run is: its methods (each a column of the comparison, at each k), the
learned-user training settings, and the validated config read from TOML."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from p13n.adapt.dpo import DpoSettings
from p13n.adapt.embedding import EmbeddingSettings
from p13n.adapt.finetune import FinetuneSettings
from p13n.adapt.lora import LoraSettings
from p13n.adapt.steering import SteeringVectorSettings
from p13n.encode import DEFAULT_ENCODER
from p13n.errors import ConfigError
from p13n.llm import LLMConfig
from p13n.paths import cache_dir
from p13n.personalize.decoding import (
    ADAPTER_CONTRAST,
    CONTEXT_STEERING,
    STANDARD,
    STEERING_VECTOR,
)
from p13n.personalize.refine import RefineSettings
from p13n.registry import Registry

BASELINE = "none"
Calibration = Literal["none", "contextual", "task"]
AUTO = "auto"
ConfigModel = TypeVar("ConfigModel", bound=BaseModel)


@dataclass(frozen=True)
class Method:
    """A personalization method the runner can evaluate: prompt builder + retriever."""

    name: str
    prompt: str
    retriever: str | None
    description: str
    adapter: Literal["lora", "dpo", "embedding", "steering-vector", "finetune"] | None = None
    """A learned-user method: the user's LoRA or DPO adapter, their embedding as soft
    tokens, their steering vector, or the task's fully fine-tuned model."""
    decoding: str = STANDARD
    """A decoding-time method (``p13n.personalize.decoding``): one arm per steering strength."""
    strength: str = "λ"
    """The strength's symbol in arm labels."""
    task_advice: bool = False
    """Every prompt carries one instruction refined on the task's train split (global level)."""

    @property
    def uses_k(self) -> bool:
        return self.retriever is not None


methods: Registry[Method] = Registry("benchmark method")
methods.register(
    BASELINE, Method(BASELINE, "none", None, "non-personalized: same template, no data")
)
for _name, _what in (
    ("bm25", "BM25 over the user's profile (the LaMP recipe)"),
    ("tfidf", "TF-IDF cosine over the profile"),
    ("dense", "all-MiniLM-L6-v2 cosine over the profile"),
    ("hybrid", "reciprocal rank fusion of BM25 and dense"),
    ("recency", "BM25 with time decay from the user's newest item"),
):
    methods.register(_name, Method(_name, "contextual", _name, _what))
methods.register(
    "profile",
    Method("profile", "profile", "bm25", "LLM-written profile summary + BM25-retrieved items"),
)
methods.register(
    "lora",
    Method("lora", "none", None, "per-user LoRA adapter (OPPU), no data in the prompt", "lora"),
)
methods.register(
    "refine",
    Method(
        "refine",
        "refined",
        None,
        "the user's instruction refined on their own examples (FERMI-style), no items",
    ),
)
methods.register(
    "refine-rag",
    Method(
        "refine-rag",
        "refined-contextual",
        "bm25",
        "the user's refined instruction + BM25 items",
    ),
)
methods.register(
    "refine-task",
    Method(
        "refine-task",
        "none",
        None,
        "one instruction refined on the task's train split (global level), no user data",
        task_advice=True,
    ),
)
methods.register(
    "finetune",
    Method(
        "finetune",
        "none",
        None,
        "every weight fine-tuned on the task's train split (global level), no data in the prompt",
        "finetune",
    ),
)
methods.register(
    "finetune-rag",
    Method(
        "finetune-rag",
        "contextual",
        "bm25",
        "the task's fine-tuned model + BM25 items (the LaMP paper's fine-tuned + RAG)",
        "finetune",
    ),
)
methods.register(
    "lora-rag",
    Method(
        "lora-rag", "contextual", "bm25", "per-user LoRA adapter + BM25 items (OPPU + RAG)", "lora"
    ),
)
methods.register(
    "dpo",
    Method(
        "dpo",
        "none",
        None,
        "per-user DPO adapter: the user's own outputs preferred over the base model's",
        "dpo",
    ),
)
methods.register(
    "embedding",
    Method(
        "embedding",
        "none",
        None,
        "user embedding as soft tokens (Persona-Plug): projector trained on the train split",
        "embedding",
    ),
)
methods.register(
    "cos",
    Method(
        "cos",
        "contextual",
        "bm25",
        "context steering (CoS): BM25 items in the prompt, each token steered by λ away from "
        "the prompt without them",
        decoding=CONTEXT_STEERING,
    ),
)
methods.register(
    "cope",
    Method(
        "cope",
        "none",
        None,
        "contrastive decoding with the user's LoRA adapter (CoPe): each token from adapter + β "
        "(adapter - base model)",
        "lora",
        decoding=ADAPTER_CONTRAST,
        strength="β",
    ),
)
methods.register(
    "style-vector",
    Method(
        "style-vector",
        "none",
        None,
        "per-user steering vector (StyleVector) added with strength α to a middle layer",
        "steering-vector",
        decoding=STEERING_VECTOR,
        strength="α",
    ),
)
methods.register(
    AUTO,
    Method(
        AUTO,
        "none",
        None,
        "the policy learned on dev: the simplest arm (calibration, fusion) within one standard "
        "error of the best, served through the Personalizer",
    ),
)


@dataclass(frozen=True)
class Arm:
    """One column of the comparison: a method at one k (the baseline has no k), and a
    decoding-time method at one strength."""

    method: str
    k: int | None
    steering: float | None = None

    @property
    def label(self) -> str:
        label = self.method if self.k is None else f"{self.method} k={self.k}"
        if self.steering is None:
            return label
        return f"{label} {methods.get(self.method).strength}={self.steering:g}"


class AdaptSettings(BaseModel):
    """How the benchmark trains learned-user arms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lora: LoraSettings = LoraSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    dpo: DpoSettings = DpoSettings(max_length=192)
    dpo_pairs: int = Field(
        16, ge=1, description="dpo: the user's newest documents made into preference pairs"
    )
    dpo_input_tokens: int = Field(96, ge=8, description="dpo: each document's text cut to this")
    projector_examples: int = Field(
        200, ge=1, description="train-split examples the projector is trained on"
    )
    steering_vector: SteeringVectorSettings = SteeringVectorSettings()
    finetune: FinetuneSettings = FinetuneSettings()
    refine: RefineSettings = RefineSettings()
    """refine, refine-rag: each user's refinement; refine-task: the train split's (with
    ``refine_task_examples`` held-in examples in place of ``examples``)."""
    refine_task_examples: int = Field(
        16, ge=1, description="refine-task: train-split examples each candidate is scored on"
    )


class BenchConfig(BaseModel):
    """A benchmark run: tasks, methods, k values, model; everything a rerun needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "bench"
    tasks: list[str] = Field(min_length=1)
    tasks_dir: Path = Path("tasks")
    data: Path | None = Field(
        None, description="data root: tasks missing from tasks_dir are built from it first"
    )
    split: Literal["train", "dev", "test"] = "test"
    limit: int | None = Field(None, gt=0, description="first N examples of each task split")
    limits: dict[str, PositiveInt] = Field(
        default_factory=dict, description="per task, overrides limit"
    )
    methods: list[str] = ["none", "bm25", "dense", "hybrid"]
    k: list[int] = [1, 4]
    llm: LLMConfig = Field(
        default_factory=lambda: LLMConfig(backend="onnx"),
        description="onnx int4 by default: as good as torch float32 on the four-task suite and "
        "6-8x faster to decode (docs/BENCHMARKS.md); training still runs in torch",
    )
    encoder: str = DEFAULT_ENCODER
    max_new_tokens: dict[str, int] = Field(
        default_factory=dict, description="per task; default by output kind"
    )
    max_item_tokens: int = Field(256, gt=0)
    min_score: float | None = Field(
        None,
        description="retrieval arms quote only items scoring above this (RetrieverConfig)",
    )
    require_match: bool = Field(
        True,
        description="retrieval arms quote only items sharing a word with the input (sparse "
        "retrievers); false: the top k whatever they share, LaMP's protocol",
    )
    max_prompt_tokens: int = Field(2048, gt=0)
    metrics: dict[str, list[str]] = Field(default_factory=dict, description="per task override")
    answer: dict[str, Literal["generate", "likelihood"]] = Field(
        default_factory=dict,
        description="per task: 'likelihood' picks the label the model finds most likely among the "
        "task's labels (label and rating tasks) instead of parsing generated text",
    )
    calibration: Literal["none", "contextual", "task"] = Field(
        "none",
        description="likelihood tasks: calibrate every arm's label scores, the baseline's "
        "included, by the prior read from content-free inputs (Zhao et al., 2021) in the arm's "
        "own prompt ('contextual': the user's data included) or in the task's non-personalized "
        "prompt ('task': the template's and model's prior only)",
    )
    fusion_weight: float = Field(
        0.0,
        ge=0,
        description="likelihood tasks: each personalized arm's label distribution (calibrated "
        "if so configured) times the user's own label history (add-one smoothed) to this power; "
        "the baseline is left alone. 0: off; inf: the user's most frequent label, the model "
        "breaking ties",
    )
    steering: list[float] = Field(
        default_factory=lambda: [1.0],
        description="decoding-time methods: one arm per strength (cos λ, cope β, style-vector "
        "α) at each k",
    )
    policy_calibrations: list[Calibration] = Field(
        default_factory=lambda: list[Calibration](["none", "task"]),
        description="auto, likelihood tasks: the calibrations each arm's answers are read "
        "through as candidates",
    )
    policy_fusion: list[float] = Field(
        default_factory=lambda: [0.0, 1.0, float("inf")],
        description="auto, likelihood tasks: the fusion weights with the user's label history "
        "tried as candidates (inf on the baseline: the history alone)",
    )
    policy_dev_examples: int = Field(
        40,
        ge=2,
        description="auto: the fewest dev examples it may choose on (a task with fewer is an "
        "error; select_limit(s) cap how many it uses)",
    )
    min_profile: int | None = Field(
        None, gt=0, description="only examples whose profile has at least N items (every arm)"
    )
    adapt: AdaptSettings = Field(
        default_factory=AdaptSettings, description="training of the lora, dpo and embedding methods"
    )
    seed: int = 0
    resamples: int = Field(1000, ge=100, description="bootstrap / randomization resamples")
    corpus_resamples: int = Field(
        200, ge=50, description="resamples for metrics that must be recomputed (BLEU, F1, RMSE)"
    )
    swap: list[str] = Field(
        default_factory=list,
        description="methods (or arms, e.g. 'bm25 k=4') also run with another user's profile",
    )
    select_k_on: Literal["dev"] | None = Field(
        None, description="run every k on this split too and report the k it picks per method"
    )
    select_limit: int | None = Field(None, gt=0)
    select_limits: dict[str, PositiveInt] = Field(default_factory=dict, description="per task")
    workers: int = Field(1, ge=1, description="> 1: generate in parallel on Ray")
    batch_size: int = Field(
        1,
        ge=1,
        description="> 1 (one worker): generate this many prompts per forward pass (greedy "
        "answers equal one-at-a-time ones up to float rounding; ~7x throughput on 2 cores)",
    )
    ray_address: str | None = None
    out: Path = Path("bench/out/run")
    cache: Path | None = Field(None, description="default: $P13N_CACHE_DIR/bench")

    @field_validator("methods", "swap")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name.partition(" k=")[0] not in methods]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; known: {', '.join(methods.names())}")
        return value

    @model_validator(mode="after")
    def _auto_chooses_alone(self) -> BenchConfig:
        if AUTO not in self.methods:
            return self
        if self.calibration != "none" or self.fusion_weight > 0:
            raise ValueError(
                "auto chooses calibration and fusion itself: leave calibration and "
                "fusion_weight unset and list the candidates in policy_calibrations and "
                "policy_fusion"
            )
        if self.select_k_on is not None:
            raise ValueError("auto chooses k itself on dev: leave select_k_on unset")
        return self

    @field_validator("swap")
    @classmethod
    def _swap_needs_a_prompt(cls, value: list[str]) -> list[str]:
        learned = [name for name in value if methods.get(name.partition(" k=")[0]).adapter]
        if learned:
            raise ValueError(
                f"swap {learned[0]!r}: the profile swap exchanges prompts, which a learned-user "
                "method does not carry; swap a retrieval method"
            )
        return value

    @field_validator("k")
    @classmethod
    def _positive_k(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError(f"k must be a non-empty list of positive integers, got {value}")
        return sorted(set(value))

    @property
    def cache_path(self) -> Path:
        return self.cache or cache_dir() / "bench"

    def arms(self) -> list[Arm]:
        """The baseline first (every comparison is against it), then each method at each k,
        ``auto`` last (it chooses among the others)."""
        arms = [Arm(BASELINE, None)]
        for name in self.methods:
            if name in (BASELINE, AUTO):
                continue
            method = methods.get(name)
            ks: list[int | None] = list(self.k) if method.uses_k else [None]
            strengths: list[float | None] = (
                list(self.steering) if method.decoding != STANDARD else [None]
            )
            arms += [Arm(name, k, strength) for k in ks for strength in strengths]
        return arms + ([Arm(AUTO, None)] if AUTO in self.methods else [])

    def swaps(self, arm: Arm) -> bool:
        """Whether ``arm`` is also answered with another user's profile."""
        return arm.method in self.swap or arm.label in self.swap


def load_bench_config(path: Path | None, **overrides: Any) -> BenchConfig:
    """A ``BenchConfig`` from a TOML file (its ``[bench]`` table or top level) and overrides."""
    return load_config(BenchConfig, path, "bench", "benchmark config", **overrides)


def load_config(
    model: type[ConfigModel], path: Path | None, table: str, what: str, **overrides: Any
) -> ConfigModel:
    """A config model from a TOML file (its ``[table]`` or top level) and overrides (``None``
    means not given); paths in the file are relative to the file."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such {what}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML ({error})") from None
        raw = dict(document.get(table, document))
        for key in ("tasks_dir", "data", "out", "cache"):
            if isinstance(raw.get(key), str):  # relative paths are relative to the config file
                raw[key] = str((path.parent / raw[key]).resolve())
    raw.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{what} {where}: {first['msg']}") from None
