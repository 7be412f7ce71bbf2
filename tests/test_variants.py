import pytest

from barkbench.variants import (
    DEFAULT_VARIANTS,
    GROUPS,
    PRESETS,
    Variant,
    VariantError,
    parse_adhoc,
    parse_variants,
)


def test_ids_derive_from_axes_only():
    assert Variant().id == "eager-fp32-bs1"
    assert Variant("bettertransformer", "fp16", "cpu", 8).id == "bettertransformer-fp16-offload-bs8"
    # The same variant through a preset and an ad hoc spec has the same id (pytest-benchmark's comparison key).
    assert parse_variants("bs8+offload+fp16") == parse_variants("attention=bt,dtype=fp16,offload=cpu,batch=8")


def test_blog_tables_are_reproduced_by_presets():
    bs1 = GROUPS["blog-bs1"]
    assert [v.id for v in bs1] == [
        "eager-fp32-bs1",
        "bettertransformer-fp32-bs1",
        "bettertransformer-fp32-offload-bs1",
        "bettertransformer-fp16-offload-bs1",
    ]
    bs8 = GROUPS["blog-bs8"]
    assert all(v.attention == "bettertransformer" and v.batch_size == 8 for v in bs8)
    assert {(v.dtype, v.offload) for v in bs8} == {("fp32", "none"), ("fp16", "none"), ("fp32", "cpu"), ("fp16", "cpu")}
    assert PRESETS["fp16"] == Variant(dtype="fp16") and PRESETS["offload"] == Variant(offload="cpu")


def test_blog_sdpa_swaps_only_the_attention():
    for blog, sdpa in zip(GROUPS["blog"], GROUPS["blog-sdpa"], strict=True):
        expected = "sdpa" if blog.attention == "bettertransformer" else blog.attention
        assert (sdpa.attention, sdpa.dtype, sdpa.offload, sdpa.batch_size) == (
            expected,
            blog.dtype,
            blog.offload,
            blog.batch_size,
        )


def test_default_selection_has_no_duplicates():
    ids = [v.id for v in parse_variants(DEFAULT_VARIANTS)]
    assert len(ids) == len(set(ids))
    assert "eager-fp32-bs1" in ids and "sdpa-fp32-bs8" in ids and "bettertransformer-fp32-bs1" in ids


def test_adhoc_defaults_and_aliases():
    assert parse_adhoc("attention=sdpa,dtype=bf16,batch=8") == Variant("sdpa", "bf16", "none", 8)
    assert parse_adhoc("dtype=float16") == Variant(dtype="fp16")
    assert parse_adhoc("attn=fa2, dtype=bf16") == Variant("flash_attention_2", "bf16")


def test_items_mix_presets_and_adhoc():
    variants = parse_variants("baseline,sdpa; attention=sdpa,batch=8 ;baseline")
    assert [v.id for v in variants] == ["eager-fp32-bs1", "sdpa-fp32-bs1", "sdpa-fp32-bs8"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("turbo", "unknown variant 'turbo'"),
        ("attention=magic", "unknown attention 'magic'"),
        ("dtype=int3", "unknown dtype 'int3'"),
        ("offload=disk", "unknown offload 'disk'"),
        ("batch=-1", "batch must be a positive integer"),
        ("batch=0", "batch must be a positive integer"),
        ("batch=many", "batch must be a positive integer"),
        ("speed=fast", "unknown axis 'speed'"),
        ("attention=sdpa,sdpa", "is not axis=value"),
        ("dtype=fp16,dtype=bf16", "given twice"),
        ("", "--bark-variants is empty"),
        (" ; ", "--bark-variants is empty"),
    ],
)
def test_bad_strings_fail_with_one_clear_line(value, message):
    with pytest.raises(VariantError) as info:
        parse_variants(value)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_cpu_default_leaves_out_only_batch8_fp16_and_says_so():
    from barkbench.variants import CPU_DEFAULT_NOTE, default_variants

    full = {v.id for v in parse_variants(DEFAULT_VARIANTS)}
    cpu = {v.id for v in default_variants("cpu")}
    assert full - cpu == {
        "bettertransformer-fp16-bs8",
        "sdpa-fp16-bs8",
        "bettertransformer-fp16-offload-bs8",
        "sdpa-fp16-offload-bs8",
    }
    assert {v.id for v in default_variants("cuda")} == full
    assert "fp16 at batch 8" in CPU_DEFAULT_NOTE and "--bark-variants" in CPU_DEFAULT_NOTE
