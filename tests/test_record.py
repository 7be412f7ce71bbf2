"""The record (``barkbench.record``): every extra_info key defined once, written and read through that definition,
with a format version; records written before the version existed are migrated, newer ones refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from barkbench import record
from barkbench.record import FIELDS, FORMAT_KEY, FORMAT_VERSION, NewerFormatError, Record, migrate

DATA = Path(__file__).parent / "data"
DATA_FILES = sorted(DATA.glob("*.json"))


@pytest.mark.parametrize("path", DATA_FILES, ids=[p.name for p in DATA_FILES])
def test_every_key_in_the_data_files_is_a_record_field(path: Path) -> None:
    keys = {key for b in json.loads(path.read_text())["benchmarks"] for key in b.get("extra_info") or {}}
    assert keys <= set(FIELDS)


def test_a_record_of_today_writes_the_keys_its_file_has_in_their_order() -> None:
    """Today's main wrote these files key by key (one process, several with adaptive rounds and quality, a GPU run
    with a failed row); the record writes the same keys, order and values, its format first."""
    for name in ("main-2026-12-06-p2.json", "main-2026-12-06-default.json", "h200-tiny.json"):
        for bench in json.loads((DATA / name).read_text())["benchmarks"]:
            extra = bench["extra_info"]
            written = Record.from_extra_info(extra).to_extra_info()
            assert list(written.items()) == [(FORMAT_KEY, FORMAT_VERSION), *extra.items()]


def test_a_group_is_written_whole_and_unset_fields_not_at_all() -> None:
    written = Record(variant="eager-fp32-bs1", device="cpu", worker_pid=7).to_extra_info()
    # The worker's facts were recorded: device_index is written, as null (the CPU has none); nothing else is.
    assert written["device_index"] is None and written["worker_pid"] == 7
    assert "peak_memory_bytes" not in written and "status" not in written
    assert list(written)[0] == FORMAT_KEY


def test_every_key_builds_a_record_and_unknown_or_wrong_values_are_refused() -> None:
    assert Record(**{"batch_size": 8}).batch_size == 8
    assert Record(process_pids=[1, 2]).process_pids == (1, 2)  # lists are kept as tuples
    with pytest.raises(TypeError, match="no_such_key"):
        Record(**{"no_such_key": 1})
    with pytest.raises(TypeError, match="peak_memory_bytes: expected an integer"):
        Record(peak_memory_bytes="760 MB")
    with pytest.raises(TypeError, match="compile: expected true or false"):
        Record(compile=1)
    with pytest.raises(ValueError, match="batch_size"):
        Record.from_extra_info({"batch_size": "eight"})
    with pytest.raises(TypeError, match="warnings: expected a list of strings"):
        Record.from_extra_info({"warnings": "careful"})
    with pytest.raises(ValueError, match="holds format 1"):
        Record(barkbench_format=0)


def test_reading_is_as_lenient_as_the_readers_were() -> None:
    read = Record.from_extra_info({"latency_cv": "0.5", "real_time_factor": float("nan"), "audio_seconds": True})
    assert read.latency_cv == 0.5 and read.real_time_factor is None and read.audio_seconds is None
    assert Record.from_extra_info({"not_ours": 1, "status": "ok"}) == Record(status="ok")


def test_stages_read_as_stage_values() -> None:
    rec = Record(stages={"semantic": {"seconds": 0.5, "peak_memory_bytes": 10, "tokens": 8}, "codec": {}})
    assert rec.stage_figures() == {"semantic": record.Stage(0.5, 10, 8.0), "codec": record.Stage()}


def test_version_less_records_are_migrated() -> None:
    old = {"variant": "eager-fp32-offload-bs1", "attention": "eager", "dtype": "fp32", "offload": "cpu"}
    migrated = migrate({**old, "batch_size": 1, "device": "cuda:1"})
    assert migrated[FORMAT_KEY] == FORMAT_VERSION and list(migrated)[0] == FORMAT_KEY
    assert (migrated["quantization"], migrated["compile"], migrated["kv_cache"]) == ("none", False, "dynamic")
    assert migrated["device_index"] == 1
    assert Record.from_extra_info(migrated).as_variant().id == "eager-fp32-offload-bs1"
    assert migrate({"device": "cpu", "device_index": None})["device_index"] is None
    assert migrate(migrated) == migrated  # a current record is left as it is


def test_a_newer_format_is_refused_in_one_line() -> None:
    with pytest.raises(NewerFormatError, match=r"^written by a newer barkbench \(format 2\); upgrade barkbench$"):
        Record.from_extra_info({FORMAT_KEY: FORMAT_VERSION + 1})
    with pytest.raises(ValueError, match="not a format number"):
        migrate({FORMAT_KEY: "1"})


def test_every_field_is_defined() -> None:
    for info in FIELDS.values():
        assert info.meaning and "\n" not in info.meaning
        assert info.better in (None, "lower", "higher")
    assert FIELDS["peak_memory_bytes"].unit == "bytes" and FIELDS["peak_memory_bytes"].better == "lower"
    assert FIELDS["throughput_samples_per_s"].better == "higher" and FIELDS["variant"].better is None


# -- round trip -----------------------------------------------------------------------------------------------

_FINITE = st.floats(allow_nan=False, allow_infinity=False)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _FINITE | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
_BLOCK = st.dictionaries(st.text(), _JSON, max_size=3)
_VALUES: dict[str, st.SearchStrategy[Any]] = {
    record.FLOAT.name: _FINITE,
    record.INT.name: st.integers(),
    record.STR.name: st.text(),
    record.BOOL.name: st.booleans(),
    record.FLOATS.name: st.lists(_FINITE, max_size=4).map(tuple),
    record.INTS.name: st.lists(st.integers(), max_size=4).map(tuple),
    record.STRS.name: st.lists(st.text(), max_size=4).map(tuple),
    record.BLOCK.name: _BLOCK,
    record.BLOCKS.name: st.dictionaries(st.text(), _BLOCK, max_size=3),
}
_EVERY_FIELD = st.fixed_dictionaries({k: _VALUES[i.kind.name] for k, i in FIELDS.items() if k != FORMAT_KEY})


@settings(max_examples=60, deadline=None)
@given(_EVERY_FIELD)
def test_a_record_with_every_field_set_round_trips(values: dict[str, Any]) -> None:
    rec = Record(**values)
    assert Record.from_extra_info(rec.to_extra_info()) == rec
    assert Record.from_extra_info(json.loads(json.dumps(rec.to_extra_info()))) == rec
    assert list(rec.to_extra_info()) == list(FIELDS)
