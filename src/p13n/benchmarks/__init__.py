"""Every benchmark runner (survey §9.1), above the packages whose methods they measure.

- ``runner``: the LaMP-format suite, every method side by side against the baseline (``config``
  its methods and settings, ``results`` what it measured, ``generation`` the cached answering,
  ``stores`` the cached per-example stores, ``scoring`` intervals and paired tests,
  ``learned`` the learned-user arms, ``runner_report`` its tables, plot and page);
- ``coldstart``: quality against profile size at each granularity (``coldstart_config``,
  ``coldstart_report``);
- ``recsys``: every recommender on one split (``recsys_report``);
- ``indirect``: rating and label predictors over the user's own history (``indirect_scores``);
- ``report``: the one writer of their files.

Submodules are imported on use: some load heavy packages.
"""

from __future__ import annotations

__all__ = [
    "coldstart",
    "coldstart_config",
    "coldstart_report",
    "config",
    "generation",
    "indirect",
    "indirect_scores",
    "learned",
    "recsys",
    "recsys_report",
    "report",
    "results",
    "runner",
    "runner_report",
    "scoring",
    "stores",
]
