"""The LLM-augmented recommender family (survey §8.2): the LLM writes item descriptions
(LLM-Rec), natural-language user profiles (profile-augmented prompting, §5.2.3), re-ranks the
top candidates, and explains a recommendation from the user's own history.

Every LLM call goes through ``RecommendationTexts``: prompts are answered once and kept in the
generation cache keyed by exactly what the model saw, so a benchmark rerun makes no new calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from p13n.llm import LLM, ChatMessage, GenerationOptions
from p13n.llm.cache import CachedLLM, GenerationCache
from p13n.recommend.data import RecData, item_text

Progress = Callable[[int], None]

ENRICH_OPTIONS = GenerationOptions(max_new_tokens=40, stop=("\n\n",))
PROFILE_OPTIONS = GenerationOptions(max_new_tokens=60, stop=("\n\n",))
EXPLAIN_OPTIONS = GenerationOptions(max_new_tokens=48, stop=("\n",))
PROFILE_HISTORY = 20
"""The most recent training interactions an LLM profile is written from."""


class RecommendationTexts:
    """The LLM client of the recommenders: answers prompts (item descriptions, profiles,
    explanations) and scores choices (re-ranking), through the generation cache when one is
    given; counts what it generated and what it reused."""

    def __init__(
        self, llm: LLM, cache: GenerationCache | None = None, *, batch_size: int = 8
    ) -> None:
        self.llm, self.cache, self.batch_size = llm, cache, batch_size
        self._cached = CachedLLM(llm, cache)

    @property
    def generated(self) -> int:
        return self._cached.generated

    @property
    def reused(self) -> int:
        return self._cached.reused

    def answer(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        options: GenerationOptions,
        progress: Progress | None = None,
    ) -> list[str]:
        """One answer per conversation, in order (cached ones are not generated again)."""
        completions = self._cached.generate_batch(
            conversations,
            options,
            batch_size=self.batch_size,
            chunk=self.batch_size,
            progress=progress,
        )
        return [completion.text for completion in completions]

    def choice_scores(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> list[float]:
        """Each choice's summed log-probability as the answer (cached)."""
        scores, _ = self._cached.choice_scores(
            messages, choices, GenerationOptions(max_new_tokens=1)
        )
        return scores


# --- Item enrichment (LLM-Rec) ---------------------------------------------------------------


def enrichment_prompt(text: str) -> list[ChatMessage]:
    """LLM-Rec's recommendation-driven prompt: what the item is and who would enjoy it."""
    return [
        {
            "role": "user",
            "content": f"Movie: {text}\nIn one sentence, describe what this movie is about and "
            "what kind of viewer would enjoy it.",
        }
    ]


def enrich_items(
    data: RecData, texts: RecommendationTexts, progress: Progress | None = None
) -> dict[int, str]:
    """Each catalog column's text followed by the LLM's description of it."""
    bases = [item_text(data.item(col)) for col in range(data.n_items)]
    answers = texts.answer([enrichment_prompt(b) for b in bases], ENRICH_OPTIONS, progress)
    return {
        col: f"{base} {answer}".strip()
        for col, (base, answer) in enumerate(zip(bases, answers, strict=True))
    }


# --- User profiles -------------------------------------------------------------------------


def history_lines(train: RecData, row: int, limit: int = PROFILE_HISTORY) -> list[str]:
    """The user's most recent training interactions as "- Title. Genres: ... (rated 4)" lines."""
    history = train.history(row)[-limit:]
    lines = []
    for position in history:
        item = train.item(int(train.cols[position]))
        value = float(train.values[position])
        lines.append(f"- {item_text(item)} (rated {value:g})")
    return lines


def profile_prompt(lines: Sequence[str]) -> list[ChatMessage]:
    return [
        {
            "role": "user",
            "content": "A viewer rated these movies (1 = hated, 5 = loved):\n"
            + "\n".join(lines)
            + "\nIn two sentences, describe this viewer's taste in movies: the genres and kinds "
            "of film they like and what they dislike.",
        }
    ]


def write_profiles(
    train: RecData,
    rows: Sequence[int],
    texts: RecommendationTexts,
    progress: Progress | None = None,
) -> dict[int, str]:
    """An LLM-written profile of each user's tastes from their training history (users without
    history get none)."""
    chosen = [row for row in rows if len(train.history(row))]
    answers = texts.answer(
        [profile_prompt(history_lines(train, row)) for row in chosen], PROFILE_OPTIONS, progress
    )
    return dict(zip(chosen, answers, strict=True))


# --- Re-ranking ----------------------------------------------------------------------------


def rerank_prompt(lines: Sequence[str]) -> list[ChatMessage]:
    return [
        {
            "role": "user",
            "content": "A viewer rated these movies (1 = hated, 5 = loved):\n"
            + "\n".join(lines)
            + "\nName one more movie this viewer will enjoy.",
        }
    ]


NEUTRAL_PROMPT: list[ChatMessage] = [{"role": "user", "content": "Name a movie."}]


RERANK_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Candidates:
    """One user's top candidates from the base model, with both signals standardised."""

    cols: npt.NDArray[np.int64]
    base: npt.NDArray[np.float32]
    pmi: npt.NDArray[np.float32]

    def ranked(self, weight: float) -> list[tuple[int, float]]:
        combined = self.base + weight * self.pmi
        order = np.argsort(-combined, kind="stable")
        return [(int(self.cols[i]), float(combined[i])) for i in order]


class LLMReranker:
    """Re-ranks a base model's top ``depth`` candidates by the LLM's preference for each title.

    The LLM reads the user's recent ratings and scores every candidate title as its answer to
    "name one more movie this viewer will enjoy": log P(title | history) - log P(title | "Name
    a movie."), a pointwise mutual information that removes the bias toward short or common
    titles. The final score adds ``weight`` x standardised PMI to the base model's standardised
    score; ``weight`` is chosen on validation data (``learn``), and 0 means the LLM is ignored.
    """

    def __init__(self, texts: RecommendationTexts, train: RecData, *, depth: int = 20) -> None:
        self.texts, self.train, self.depth = texts, train, depth
        self.weight = 0.0
        self._neutral: dict[int, float] = {}

    def pmi(self, row: int, cols: Sequence[int]) -> npt.NDArray[np.float32]:
        """log P(title | user's history) - log P(title | no history) for each candidate."""
        titles = [self.train.item(col).title for col in cols]
        prompt = rerank_prompt(history_lines(self.train, row, limit=10))
        personal = self.texts.choice_scores(prompt, titles)
        missing = [col for col in cols if col not in self._neutral]
        if missing:
            neutral_titles = [self.train.item(col).title for col in missing]
            scored = self.texts.choice_scores(NEUTRAL_PROMPT, neutral_titles)
            self._neutral.update(zip(missing, scored, strict=True))
        neutral = [self._neutral[col] for col in cols]
        return np.array(personal, dtype=np.float32) - np.array(neutral, dtype=np.float32)

    def candidates(
        self, row: int, base_scores: npt.NDArray[np.float32], exclude: npt.NDArray[np.int64]
    ) -> Candidates:
        """The base model's top ``depth`` columns outside ``exclude``, with both signals."""
        masked = base_scores.astype(np.float64, copy=True)
        masked[exclude] = -np.inf
        top = np.argsort(-masked, kind="stable")[: self.depth]
        top = top[np.isfinite(masked[top])]
        if len(top) == 0:  # the user has seen every item: nothing to re-rank
            empty = np.zeros(0, dtype=np.float32)
            return Candidates(top.astype(np.int64), empty, empty)
        return Candidates(
            top.astype(np.int64), _z(base_scores[top]), _z(self.pmi(row, [int(c) for c in top]))
        )

    def learn(
        self,
        candidates: Mapping[int, Candidates],
        held_out: Mapping[int, Sequence[int]],
        objective: Callable[[dict[int, list[tuple[int, float]]]], float],
    ) -> float:
        """Choose the weight (from ``RERANK_WEIGHTS``) that maximises ``objective`` of the
        re-ranked validation candidates."""
        results = {
            weight: objective({row: c.ranked(weight) for row, c in candidates.items()})
            for weight in RERANK_WEIGHTS
        }
        self.weight = max(RERANK_WEIGHTS, key=lambda w: (results[w], -w))
        return self.weight


def _z(values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    std = float(values.std())
    return np.asarray((values - values.mean()) / (std if std > 0 else 1.0), dtype=np.float32)


# --- Explanations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """Why an item was recommended: the user's own items it resembles, and a sentence."""

    item_id: str
    because: tuple[str, ...]
    """Ids of the user's own (training) items the explanation rests on."""
    text: str


def explain_prompt(liked: Sequence[str], title: str) -> list[ChatMessage]:
    return [
        {
            "role": "user",
            "content": f"A viewer enjoyed {' and '.join(liked)}. In one short sentence, tell "
            f"them why they may also enjoy {title}, mentioning the movies they enjoyed.",
        }
    ]


def explain(
    train: RecData,
    row: int,
    cols: Sequence[int],
    vectors: npt.NDArray[np.float32],
    texts: RecommendationTexts,
    *,
    evidence: int = 2,
) -> list[Explanation]:
    """An explanation for each recommended column, grounded in the user's own history: the
    ``evidence`` items they rated highest among those most similar (by item vectors) to the
    recommendation are named first, then the LLM's sentence about them."""
    history = train.history(row)
    if len(history) == 0:
        return [Explanation(train.item_ids[col], (), "Popular with other viewers.") for col in cols]
    own = train.cols[history]
    values = train.values[history]
    prompts = []
    grounds: list[list[int]] = []
    for col in cols:
        similarity = vectors[own] @ vectors[col]
        # similar first; a liked item beats a disliked one of equal similarity
        order = np.lexsort((-values, -similarity))
        chosen = [int(own[i]) for i in order[:evidence]]
        grounds.append(chosen)
        prompts.append(explain_prompt([train.item(c).title for c in chosen], train.item(col).title))
    sentences = texts.answer(prompts, EXPLAIN_OPTIONS)
    explanations = []
    for col, chosen, sentence in zip(cols, grounds, sentences, strict=True):
        titles = " and ".join(train.item(c).title for c in chosen)
        explanations.append(
            Explanation(
                item_id=train.item_ids[col],
                because=tuple(train.item_ids[c] for c in chosen),
                text=f"Because you watched {titles}: {sentence}".strip(),
            )
        )
    return explanations


def profile_vectors(
    profiles: Mapping[int, str], encode: Callable[[Sequence[str]], npt.NDArray[np.float32]]
) -> dict[int, npt.NDArray[np.float32]]:
    """The embedded profile of each user row."""
    rows = list(profiles)
    vectors = encode([profiles[row] for row in rows]) if rows else np.zeros((0, 0), np.float32)
    return {row: vectors[i] for i, row in enumerate(rows)}
