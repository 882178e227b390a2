"""Agreement of the personalized LLM-as-judge with gold preferences on DSP (Cheng et al. 2023).

For N queries of the DSP test split (seeded sample), one persona domain each (seeded): the user
context is that domain's one-sentence persona, answer a is the domain's own answer (the gold
preference) and answer b another domain's answer. The judge compares them pairwise, in both
orders. Accuracy is how often it prefers a: over all pairs (invalid and tied judgements count as
wrong), over valid ones, over position-consistent ones and over high-confidence ones.

``--verdict generate`` (the default) has the judge write a JSON verdict, parsed as free text;
``--verdict likelihood`` takes the likelier of the letters "A" and "B" instead (always valid; the
confidence is that letter's probability of the two, 0.5-1, so ``--threshold`` means the same
probability). Likelihood needs a backend that scores choices: embedded or hf, not openai.

    .venv/bin/python bench/judge_agreement.py --limit 40        # embedded judge, ~6 min on 2 cores
    .venv/bin/python bench/judge_agreement.py --limit 40 --verdict likelihood
    .venv/bin/python bench/judge_agreement.py --backend openai --model NAME \\
        --base-url http://127.0.0.1:8000/v1                     # any OpenAI-compatible server
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import track
from rich.table import Table
from scipy.stats import binomtest  # type: ignore[import-untyped]

from p13n.datasets.dsp import PreferencePair, load_dsp, persona_description, preference_pairs
from p13n.errors import ConfigError
from p13n.evaluate.judge import (
    CRITERION_NAMES,
    Judge,
    JudgeConfig,
    PairwiseJudgement,
    WinCounts,
    summarize_pairwise,
)
from p13n.llm import LLMConfig, get_llm

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsp-domain-preference"


def sample_pairs(data: Path, limit: int, seed: int) -> list[PreferencePair]:
    """One (persona, chosen, rejected) pair for each of ``limit`` seeded queries."""
    queries = load_dsp(data)
    rng = random.Random(seed)
    chosen = rng.sample(queries, min(limit, len(queries)))
    pairs = []
    for query in chosen:
        candidates = preference_pairs([query], seed)
        if candidates:  # queries whose four answers are identical give none
            pairs.append(rng.choice(candidates))
    return pairs


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _counts(counts: WinCounts) -> dict[str, Any]:
    return {
        **asdict(counts),
        "n": counts.n,
        "accuracy": counts.strict_win_rate,
        "accuracy_excluding_ties": counts.decisive_win_rate,
        "win_rate_ties_half": counts.win_rate,
        "tie_rate": counts.tie_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=100, help="queries (one pair each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.75, help="high confidence, 0-1")
    parser.add_argument("--max-answer-tokens", type=int, default=256)
    parser.add_argument(
        "--verdict",
        choices=("generate", "likelihood"),
        default="generate",
        help="generate: parse a written JSON verdict; likelihood: the likelier of A and B "
        "(embedded or hf backends only)",
    )
    parser.add_argument("--backend", default="embedded", help="embedded, hf or openai")
    parser.add_argument("--model", help="openai: the model name the server serves")
    parser.add_argument("--path", help="hf: a local transformers model directory")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY")
    parser.add_argument("--tokenizer", default="bytes", help="openai: embedded, bytes or a dir")
    parser.add_argument("--out", type=Path, default=Path("bench/out/judge_agreement.json"))
    args = parser.parse_args()

    console = Console(width=max(Console().width, 110))
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    console.print(f"$ {command}")
    started = time.perf_counter()
    llm_config = LLMConfig(
        backend=args.backend,
        model=args.model,
        path=args.path,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        tokenizer=args.tokenizer,
    )
    judge_config = JudgeConfig(max_answer_tokens=args.max_answer_tokens, verdict=args.verdict)
    try:
        judge = Judge(get_llm(llm_config), judge_config)
    except ConfigError as error:
        parser.error(str(error))
    pairs = sample_pairs(args.data, args.limit, args.seed)
    loaded = time.perf_counter()
    judged: list[PairwiseJudgement] = []
    for pair in track(pairs, description="judging", console=console):
        context = persona_description(pair.persona)
        judged.append(judge.compare(context, pair.prompt, pair.chosen, pair.rejected))
    finished = time.perf_counter()

    summary = summarize_pairwise(judged, threshold=args.threshold)
    valid = summary.valid
    decisive = valid.wins + valid.losses
    p_value = binomtest(valid.wins, decisive, 0.5).pvalue if decisive else None
    everything = valid.wins / summary.n if summary.n else None
    table = Table(
        title=f"Judge agreement with DSP gold preferences: {summary.n} pairs, "
        f"{judge.llm.model} ({judge.llm.backend}), {args.verdict} verdicts, both orders each",
        title_justify="left",
    )
    for column in ("measure", "n", "value"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    rows = [
        ("accuracy, all pairs (invalid and ties wrong)", summary.n, everything),
        ("accuracy, valid judgements (ties wrong)", valid.n, valid.strict_win_rate),
        ("accuracy, valid, ties excluded", decisive, valid.decisive_win_rate),
        ("accuracy, position-consistent", summary.consistent.n, summary.consistent.strict_win_rate),
        (
            f"accuracy, confidence >= {args.threshold:g}",
            summary.high_confidence.n,
            summary.high_confidence.strict_win_rate,
        ),
        ("win rate, ties half (valid)", valid.n, valid.win_rate),
        ("invalid judgement rate", summary.n, summary.invalid_rate),
        ("invalid call rate", summary.calls, summary.invalid_call_rate),
        ("tie rate (valid)", valid.n, valid.tie_rate),
        ("position consistency (valid)", valid.n, summary.position_consistency),
        ("picked the answer shown first", None, summary.first_shown_rate),
        ("sign test p, wins vs losses (valid)", decisive, p_value),
    ]
    for name, n, value in rows:
        table.add_row(name, "" if n is None else str(n), _rate(value))
    console.print(table)
    seconds = finished - started
    per_call = (finished - loaded) / summary.calls if summary.calls else 0.0
    console.print(
        f"{seconds:.0f} s in all ({loaded - started:.0f} s loading, {per_call:.1f} s a call, "
        f"{summary.calls} calls)"
    )

    result = {
        "command": command,
        "seconds": round(seconds, 1),
        "seconds_per_call": round(per_call, 2),
        "llm": {"backend": judge.llm.backend, "model": judge.llm.model},
        "config": {
            "data": str(args.data),
            "limit": args.limit,
            "seed": args.seed,
            "threshold": args.threshold,
            "judge": judge.config.model_dump(),
            "criteria": list(CRITERION_NAMES),
        },
        "summary": {
            "n": summary.n,
            "calls": summary.calls,
            "invalid": summary.invalid,
            "invalid_rate": summary.invalid_rate,
            "invalid_calls": summary.invalid_calls,
            "invalid_call_rate": summary.invalid_call_rate,
            "accuracy_all_pairs": everything,
            "valid": _counts(valid),
            "consistent": _counts(summary.consistent),
            "high_confidence": _counts(summary.high_confidence),
            "position_consistency": summary.position_consistency,
            "first_shown_rate": summary.first_shown_rate,
            "sign_test_p": p_value,
        },
        "pairs": [
            {
                "id": pair.id,
                "persona": pair.persona,
                "winner": j.winner,
                "correct": j.winner == "a",
                "valid": j.valid,
                "consistent": j.consistent,
                "confidence": j.confidence,
                "orders": [asdict(order) for order in j.orders],
            }
            for pair, j in zip(pairs, judged, strict=True)
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
