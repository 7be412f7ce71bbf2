"""The harness's command-line options, all ``--bark-*``.

Each ``type=`` parser returns the typed value the session uses (``list[Variant]``, a ``ModelSource``, loaded
``Budgets``, an int), so a bad value fails once, at parse time, before any model loads, and nothing is parsed a
second time (``config.BenchOptions.read`` takes the values once). Parsing has no side effects beyond reading the
files an option names. Declaring the options runs in every pytest session of any project that installs barkbench:
this module imports neither torch nor numpy, scipy or matplotlib; a parser imports what it needs when its option
is given.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import pytest

from barkbench.bark import MAX_TEXT_TOKENS, SEMANTIC_WINDOW
from barkbench.measure import sources
from barkbench.measure import workload as workload_mod
from barkbench.measure.workload import DEFAULT_SEMANTIC_TOKENS, MAX_SEMANTIC_TOKENS
from barkbench.parsers import positive_int, positive_seconds
from barkbench.variants import DEFAULT_VARIANTS, Variant, VariantError, parse_variants

if TYPE_CHECKING:
    from barkbench.results import budgets as budgets_mod
    from barkbench.results import quality as quality_mod
    from barkbench.sweep import shards as shards_mod

ISOLATION_MODES = ("process", "off")
DEVICES = ("auto", "cpu", "cuda", "xpu", "mps")
BT_VIA = ("transform", "to_bettertransformer")


parse_round_timeout = positive_seconds("--bark-round-timeout")
parse_load_timeout = positive_seconds("--bark-load-timeout")
parse_max_time = positive_seconds("--bark-max-time")
parse_rounds = positive_int("--bark-rounds")
parse_threads = positive_int("--bark-threads")
parse_processes = positive_int("--bark-processes")
parse_max_rounds = positive_int("--bark-max-rounds", minimum=2)


def parse_target_precision(value: str) -> float:
    try:
        fraction = float(value.removesuffix("%")) / (100 if value.endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--bark-target-precision must be a fraction such as 0.02 (or 2%), got {value!r}"
        ) from None
    if not 0 < fraction < 1:
        raise argparse.ArgumentTypeError(f"--bark-target-precision must be between 0 and 1 (e.g. 0.02), got {value}")
    return fraction


parse_warmup_rounds = positive_int("--bark-warmup-rounds", minimum=0)
_positive_semantic_tokens = positive_int("--bark-semantic-tokens")


def parse_semantic_tokens(value: str) -> int:
    number = _positive_semantic_tokens(value)
    if number > MAX_SEMANTIC_TOKENS:
        # Past the window the semantic model indexes beyond its position table (IndexError after the load).
        raise argparse.ArgumentTypeError(
            f"--bark-semantic-tokens {number} does not fit Bark's {SEMANTIC_WINDOW}-position window "
            f"({MAX_TEXT_TOKENS} text + 1 + new tokens); use at most {MAX_SEMANTIC_TOKENS}"
        )
    return number


def parse_variants_option(value: str) -> list[Variant]:
    try:
        return parse_variants(value)
    except VariantError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_shard_option(value: str) -> shards_mod.Shard:
    from barkbench.sweep import shards as shards_mod

    try:
        return shards_mod.parse_shard(value)
    except shards_mod.ShardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_model_option(value: str) -> sources.ModelSource:
    try:
        source = sources.parse_model_source(value)
        if source.kind == "folder":
            # A missing or incomplete folder fails here, once, instead of in every variant's worker.
            sources.resolve(source)
    except sources.SourceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return source


def parse_budgets_option(value: str) -> budgets_mod.Budgets:
    from barkbench.results import budgets as budgets_mod

    try:
        return budgets_mod.load_budgets(value)
    except budgets_mod.BudgetError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_quality_gates_option(value: str) -> tuple[quality_mod.Gate, ...]:
    from barkbench.results import quality as quality_mod

    try:
        return quality_mod.load_gates(value)
    except quality_mod.QualityGateError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_tables_option(value: str) -> tuple[str, ...]:
    from barkbench.results import report as report_mod

    try:
        return report_mod.parse_tables(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_prompts_option(value: str) -> str:
    """The file is read and checked now (missing, empty, not UTF-8, a bad JSON line); the session reads it again."""
    try:
        workload_mod.load_prompts(value)
    except workload_mod.WorkloadError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def parse_voice_option(value: str) -> str:
    """An .npz preset is read and its keys and shapes checked now; a preset name is resolved by the model."""
    try:
        workload_mod.load_voice(value)
    except workload_mod.WorkloadError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def check_device(device: str) -> None:
    """``--bark-device cuda`` where torch cannot use a CUDA GPU fails the session at start-up, in one line, before
    any model loads (never a quiet CPU run). Asks a child process: this one creates no CUDA context."""
    if device != "cuda":
        return
    from barkbench.measure import device as device_mod

    reason = device_mod.cuda_unavailable_reason()
    if reason:
        raise pytest.UsageError(reason)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("barkbench", "Bark benchmark harness")
    group.addoption(
        "--bark-model",
        default=None,
        type=parse_model_option,
        help="model source: tiny (default, built offline), random:bark-small, random:bark, a hub id "
        "(suno/bark-small) or a folder written by save_pretrained",
    )
    group.addoption(
        "--bark-variants",
        action="append",
        type=parse_variants_option,
        help=f"variants to run (repeatable; ';' separates items): presets/groups such as baseline, sdpa, "
        f"blog, blog-sdpa, or ad hoc attention=sdpa,dtype=bf16,offload=cpu,batch=8. Default: {DEFAULT_VARIANTS}",
    )
    group.addoption(
        "--bark-shard",
        type=parse_shard_option,
        default=None,
        metavar="K/N",
        help="run only the K-th of N deterministic parts of the selected variants, balanced by estimated cost "
        "(batch x dtype x offload/compile); the shard and the whole matrix are recorded for `barkbench merge`",
    )
    group.addoption("--bark-rounds", type=parse_rounds, default=None, help="measured rounds per variant (default: 3)")
    group.addoption(
        "--bark-warmup-rounds",
        type=parse_warmup_rounds,
        default=1,
        help="unmeasured generate calls before the rounds (default: 1)",
    )
    group.addoption(
        "--bark-semantic-tokens",
        type=parse_semantic_tokens,
        default=DEFAULT_SEMANTIC_TOKENS,
        help="pinned semantic length; random weights never stop early (default: 256, the blog's)",
    )
    group.addoption(
        "--bark-round-timeout",
        type=parse_round_timeout,
        default=None,
        metavar="SECONDS",
        help="kill a worker whose call has not answered after SECONDS, record the variant as failed (timeout) and "
        "go on (default: 10 x the slowest call so far, at least 300 s); loading has --bark-load-timeout",
    )
    group.addoption(
        "--bark-load-timeout",
        type=parse_load_timeout,
        default=None,
        metavar="SECONDS",
        help="kill a worker that has not started and loaded its model after SECONDS (a first build of a random "
        "model or a hub download included), record the variant as failed (timeout) and go on (default: 1800 s)",
    )
    group.addoption(
        "--bark-quality",
        action="store_true",
        default=False,
        help="after each variant's rounds, measure its drift from the fp32 eager reference (teacher-forced KL and "
        "top-1 agreement per stage, first differing token, log-mel audio distance) and the re-sampling noise "
        "floor; recorded as extra_info quality",
    )
    group.addoption(
        "--bark-quality-gates",
        type=parse_quality_gates_option,
        default=None,
        metavar="FILE",
        help="at the end of the run, hold every variant's drift to FILE's limits (TOML, see docs/quality.md) and "
        "fail the session if one is exceeded; implies --bark-quality",
    )
    group.addoption(
        "--bark-prompts",
        type=parse_prompts_option,
        default=None,
        metavar="FILE",
        help='prompts to speak instead of the blog\'s: one per line, or JSONL with "text" and optional '
        '"voice"; a batch fills from them in order (cycling)',
    )
    group.addoption(
        "--bark-voice",
        type=parse_voice_option,
        default=None,
        metavar="PRESET|FILE.npz",
        help="voice preset (history_prompt): a hub preset name such as v2/en_speaker_6 for real checkpoints, or "
        "an .npz with semantic_prompt (T,), coarse_prompt (2,T), fine_prompt (8,T); random models get a "
        "deterministic synthetic preset of those shapes",
    )
    group.addoption(
        "--bark-long-form",
        action="store_true",
        default=False,
        help=f"split the prompts into sentences that fit Bark's {MAX_TEXT_TOKENS}-token window and generate them "
        "one after another (batch-1 variants); records per-piece and total seconds",
    )
    group.addoption(
        "--bark-isolation",
        choices=ISOLATION_MODES,
        default="process",
        help="process (default): a fresh process per variant; off: in this process (debugging)",
    )
    group.addoption(
        "--bark-device",
        choices=DEVICES,
        default="auto",
        help="device to run on (default: the accelerator if there is one, else cpu)",
    )
    group.addoption(
        "--bark-wav-dir",
        default=None,
        metavar="DIR",
        help="save one WAV per variant (the last round's first sample) as DIR/<variant-id>.wav",
    )
    group.addoption(
        "--bark-fixed-length",
        action="store_true",
        default=False,
        help="force every call to exactly --bark-semantic-tokens semantic tokens (EOS masked until then): "
        "removes output-length variance from A/B comparisons of real checkpoints",
    )
    group.addoption(
        "--bark-bt-via",
        choices=BT_VIA,
        default="transform",
        help="how the bettertransformer variant is applied: BetterTransformer.transform(model, "
        "keep_original_model=False) or the blog's model.to_bettertransformer()",
    )
    group.addoption(
        "--bark-threads",
        type=parse_threads,
        default=None,
        metavar="N",
        help="torch intra-op threads in each variant's worker (default: torch's, one per usable core); recorded "
        "as torch_threads",
    )
    group.addoption(
        "--bark-processes",
        type=parse_processes,
        default=1,
        metavar="P",
        help="spread each variant's rounds over P fresh worker processes, each with its own load and warm-up and "
        "--bark-rounds rounds (as pyperf does); per-process means recorded as extra_info process_means_s "
        "(default: 1)",
    )
    group.addoption(
        "--bark-interleave",
        action="store_true",
        default=False,
        help="run the variants' processes interleaved (A1 B1 C1 A2 B2 C2 ..., as asv's --interleave-processes) so "
        "slow drift of the machine hits every variant alike; the first benchmark test runs the whole schedule",
    )
    group.addoption(
        "--bark-target-precision",
        type=parse_target_precision,
        default=None,
        metavar="FRACTION",
        help="add rounds (in each variant's last process) until the 95 %% Student-t interval of the mean latency "
        "is within FRACTION of the mean (e.g. 0.02), or a cap is hit; recorded as precision_met and "
        "precision_reason",
    )
    group.addoption(
        "--bark-max-rounds",
        type=parse_max_rounds,
        default=None,
        metavar="N",
        help="with --bark-target-precision: at most N measured rounds per variant (default: 50)",
    )
    group.addoption(
        "--bark-max-time",
        type=parse_max_time,
        default=None,
        metavar="SECONDS",
        help="with --bark-target-precision: stop adding rounds once a variant's timed rounds took SECONDS "
        "(default: 600)",
    )
    group.addoption(
        "--bark-remeasure-limits",
        action="store_true",
        default=False,
        help="measure the machine's limits again (copy bandwidth, decode GEMV, fine GEMM) instead of using the "
        "cached figures in the cache folder's machine-limits.json (the workers get it in their environment)",
    )
    group.addoption(
        "--bark-tables",
        type=parse_tables_option,
        default=None,
        metavar="compact|full|compact,stages,limits,quality,processes,memory",
        help="what the session prints at its end: compact (default: one table per group, the legend once), "
        "compact plus any of stages, limits, quality, processes, memory (comma-separated: those tables under each "
        "group's), or full (every table of `barkbench report`)",
    )
    group.addoption(
        "--bark-budgets",
        type=parse_budgets_option,
        default=None,
        metavar="FILE|default",
        help="at the end of the run, hold every variant to the memory budgets of FILE (TOML; "
        "'default' = barkbench's budgets.toml) and fail the session if one is exceeded",
    )
