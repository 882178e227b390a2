"""TF-IDF cosine similarity over a user's corpus (scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from p13n.retrieve.base import Scores, UserCorpus, term_matches, tokenize


@dataclass(frozen=True)
class TfidfRetriever:
    """Cosine between the query's and each row's TF-IDF vector (sublinear tf, smoothed idf),
    with the vocabulary fitted on the user's own corpus."""

    name: str = "tfidf"

    def _index(self, corpus: UserCorpus) -> tuple[Any, Any]:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(
            tokenizer=tokenize, lowercase=False, token_pattern=None, sublinear_tf=True
        )
        texts = [corpus.retrievable_text(row) for row in range(len(corpus))]
        try:
            matrix = vectorizer.fit_transform(texts)
        except ValueError:  # every row is stopwords only: nothing to match
            return None, None
        return vectorizer, matrix

    def matches(self, query: str, corpus: UserCorpus) -> npt.NDArray[np.bool_]:
        return term_matches(query, corpus)

    def score(self, query: str, corpus: UserCorpus) -> Scores:
        if len(corpus) == 0:
            return np.zeros(0)
        vectorizer, matrix = corpus.derived("tfidf", self._index)
        if vectorizer is None:
            return np.zeros(len(corpus))
        # Rows are L2-normalised, so the dot product is the cosine.
        return np.asarray((matrix @ vectorizer.transform([query]).T).toarray()).ravel()
