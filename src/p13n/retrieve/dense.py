"""Dense retrieval: exact cosine between the encoded query and each row's vector."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from p13n.encode import Encoder
from p13n.retrieve.base import Scores, UserCorpus


@dataclass(frozen=True)
class DenseRetriever:
    """Exact cosine in numpy over the stored embeddings (a user has hundreds or thousands of rows:
    an ANN index would cost more than it saves). Rows without a stored vector (interactions,
    attributes, documents ingested without embeddings) are encoded once per corpus version."""

    encoder: Encoder = field(repr=False)
    name: str = "dense"

    def _matrix(self, corpus: UserCorpus) -> npt.NDArray[np.float32]:
        if corpus.vectors is not None and corpus.encoder_id != self.encoder.id:
            raise ValueError(
                f"corpus vectors are from {corpus.encoder_id!r}, the retriever encodes queries "
                f"with {self.encoder.id!r}: load the corpus with the same encoder"
            )
        if corpus.vectors is None or corpus.has_vector is None:
            matrix = np.zeros((len(corpus), self.encoder.dim), dtype=np.float32)
            todo = list(range(len(corpus)))
        else:
            matrix = corpus.vectors.copy()
            todo = np.flatnonzero(~corpus.has_vector).tolist()
        if todo:
            matrix[todo] = self.encoder.encode([corpus.retrievable_text(row) for row in todo])
        return matrix

    def score(self, query: str, corpus: UserCorpus) -> Scores:
        if len(corpus) == 0:
            return np.zeros(0)
        matrix = corpus.derived(("dense", self.encoder.id), self._matrix)
        scores: Scores = (matrix @ self.encoder.encode([query])[0]).astype(np.float64)
        return scores
