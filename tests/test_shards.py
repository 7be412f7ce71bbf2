"""--bark-shard's partition: every variant in exactly one shard, the same on every call, balanced by cost."""

from __future__ import annotations

import json

import pytest

from barkbench.results.merge import merge
from barkbench.sweep.shards import (
    JSON_KEY,
    Shard,
    ShardError,
    cost,
    fingerprint,
    parse_shard,
    partition,
    sweep_record,
)
from barkbench.variants import ATTENTIONS, DTYPES, GROUPS, OFFLOADS, Variant, dedupe, parse_variants

pytest.importorskip("hypothesis", reason="property tests need hypothesis (pip install hypothesis)")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

variants = st.builds(
    Variant,
    attention=st.sampled_from(ATTENTIONS),
    dtype=st.sampled_from(DTYPES),
    offload=st.sampled_from(OFFLOADS),
    batch_size=st.sampled_from([1, 2, 4, 8, 16]),
    compile=st.booleans(),
)


@given(st.lists(variants, min_size=1, max_size=30).map(dedupe), st.integers(min_value=1, max_value=8))
def test_partition_covers_the_matrix_exactly_once_and_is_balanced(matrix: list[Variant], count: int) -> None:
    shards = partition(matrix, count)
    assert len(shards) == count
    ids = [v.id for shard in shards for v in shard]
    assert sorted(ids) == sorted(v.id for v in matrix)  # each variant once, none lost
    loads = [sum(cost(v) for v in shard) for shard in shards]
    # The greedy rule's guarantee: no shard exceeds another by more than one variant's cost.
    assert max(loads) - min(loads) <= max(cost(v) for v in matrix) + 1e-9
    assert partition(list(reversed(matrix)), count) != [] and sorted(
        sorted(v.id for v in s) for s in partition(list(reversed(matrix)), count)
    ) == sorted(sorted(v.id for v in s) for s in shards)  # the order given does not change the shards


def test_partition_balances_by_cost_not_by_count() -> None:
    # Eight batch-1 rows and two batch-8 rows: by count, 5+5; by cost, the two batch-8 rows go apart.
    matrix = parse_variants("blog-bs1;blog-sdpa")[:8] + parse_variants("bs8;attention=sdpa,batch=8")
    one, two = partition(matrix, 2)
    assert {v.batch_size for v in one} >= {8} and {v.batch_size for v in two} >= {8}
    loads = [sum(cost(v) for v in s) for s in (one, two)]
    assert abs(loads[0] - loads[1]) <= 1.5  # one batch-1 offload row at most


def test_shard_select_keeps_the_matrix_order_and_label() -> None:
    matrix = list(GROUPS["blog"])
    shard = Shard(2, 3)
    chosen = shard.select(matrix)
    assert chosen == [v for v in matrix if v in chosen]
    record = sweep_record(matrix, shard, {"model_source": "tiny"})
    assert record["shard"] == "2/3"
    assert record["matrix"] == [v.id for v in matrix]
    assert record["variants"] == [v.id for v in chosen]
    assert record["matrix_fingerprint"] == fingerprint(list(reversed(matrix)))
    assert fingerprint(matrix) != fingerprint(matrix[1:])


@pytest.mark.parametrize("value", ["0/2", "3/2", "2", "a/b", "1/0", ""])
def test_bad_shard_values_say_how_to_fix(value: str) -> None:
    with pytest.raises(ShardError, match="K/N|between 1 and N"):
        parse_shard(value)


def test_shard_option_is_parsed_at_startup(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(bark_variant):\n    print('RAN', bark_variant.id)\n")
    result = pytester.runpytest("--bark-shard", "5/2", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--bark-shard*between 1 and N*"])
    ran = []
    for k in (1, 2):
        out = pytester.runpytest("--bark-variants", "blog", "--bark-shard", f"{k}/2", "-s", "-p", "no:cacheprovider")
        assert out.ret == 0
        ran += [line.split()[-1] for line in out.outlines if "RAN" in line]
    assert sorted(ran) == sorted(v.id for v in GROUPS["blog"])


def test_shard_json_records_the_matrix_and_skipped_variants(bench_pytester: pytest.Pytester) -> None:
    # FlashAttention-2 needs CUDA: skipped on this CPU before any model loads; one short baseline row runs (a file
    # is only written when something ran).
    out = bench_pytester.path / "s.json"
    result = bench_pytester.runpytest(
        "bench/",
        "--bark-device=cpu",
        "--bark-variants=baseline;flash_attention_2+fp16;attention=flash_attention_2,batch=8",
        "--bark-shard=1/1",
        "--bark-semantic-tokens=8",
        "--bark-rounds=1",
        "--bark-warmup-rounds=0",
        f"--benchmark-json={out}",
        "-p",
        "no:cacheprovider",
    )
    assert result.ret == 0
    record = json.loads(out.read_text())[JSON_KEY]
    assert record["shard"] == "1/1"
    assert record["matrix"] == record["variants"] and len(record["matrix"]) == 3
    assert set(record["skipped"]) == {"flash_attention_2-fp16-bs1", "flash_attention_2-fp32-bs8"}
    assert record["workload"]["device"] == "cpu" and record["workload"]["model_source"] == "tiny"
    merged = merge([out])
    assert merged.complete and set(merged.data[JSON_KEY]["skipped"]) == set(record["skipped"])
