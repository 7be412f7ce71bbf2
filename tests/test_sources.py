import json
import os

import pytest
import torch

from barkbench.measure import sources


def test_tiny_is_built_once_and_reloaded_from_disk(tiny_source, tiny_dir):
    assert (tiny_dir / "model.safetensors").exists()
    assert (tiny_dir / "generation_config.json").exists()
    stamp = (tiny_dir / "model.safetensors").stat().st_mtime_ns
    # A second resolve finds the complete folder and builds nothing.
    assert sources.resolve(tiny_source) == str(tiny_dir)
    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == stamp

    model = sources.load_model(tiny_source)
    assert type(model).__name__ == "BarkModel"
    # Loaded through from_pretrained: it knows where it came from.
    assert model.name_or_path == str(tiny_dir)
    # The real vocabularies and the nested generation config survive the round trip.
    assert model.config.semantic_config.input_vocab_size == 129_600
    assert model.config.fine_acoustics_config.n_codes_total == 8
    assert model.generation_config.semantic_config["max_new_tokens"] > 0
    assert model.generation_config.sample_rate == 24_000


def test_tiny_is_deterministic(tmp_path, tiny_dir):
    rebuilt = sources.ensure_random_model("tiny", root=tmp_path)
    from safetensors.torch import load_file

    a, b = load_file(tiny_dir / "model.safetensors"), load_file(rebuilt / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_killed_builds_folder_is_removed_by_the_next_build(tmp_path):
    # A builder dies with its parent (a Ctrl-C during a first build): its temporary folder, up to gigabytes, stays
    # behind; the next build of that model, holding the cache lock, removes it, and nothing of another model.
    target = sources.random_model_dir("tiny", tmp_path)
    killed = tmp_path / f".{target.name}-killed"
    killed.mkdir()
    (killed / "model.safetensors").write_bytes(b"half a file")
    other = tmp_path / ".random-bark-small-0123456789-building"
    other.mkdir()
    assert sources.ensure_random_model("tiny", root=tmp_path) == target
    assert not killed.exists() and other.exists()


def test_processor_tokenizes_the_prompts_without_unknowns(tiny_source):
    from barkbench.measure.workload import PROMPTS

    processor = sources.load_processor(tiny_source)
    tokenizer = processor.tokenizer
    for prompt in PROMPTS:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert ids and tokenizer.unk_token_id not in ids, prompt
        assert max(ids) < 119_547
    inputs = processor(list(PROMPTS))
    assert inputs["input_ids"].shape == (3, 256)


@pytest.mark.parametrize("arch", ["bark-small", "bark"])
def test_random_architectures_match_the_checkpoints(arch):
    from transformers import BarkConfig, BarkModel

    # Built on the meta device: the parameter count without allocating gigabytes.
    with torch.device("meta"):
        model = BarkModel(BarkConfig(**sources.bark_config_dict(arch)))
    count = sources.parameter_count(model)
    assert count == pytest.approx(sources.EXPECTED_PARAMETERS[arch], rel=0.005)
    assert sources.parameter_count(model.codec_model) == pytest.approx(14_850_000, rel=0.005)
    layers, heads, hidden = sources.ARCHITECTURES[arch]
    for sub in (model.config.semantic_config, model.config.coarse_acoustics_config, model.config.fine_acoustics_config):
        assert (sub.num_layers, sub.num_heads, sub.hidden_size, sub.block_size) == (layers, heads, hidden, 1024)


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("tiny", "random"),
        ("random:bark", "random"),
        ("suno/bark-small", "hub"),
        ("./models/x", "folder"),
        ("/abs/path", "folder"),
    ],
)
def test_parse_model_source(spec, kind):
    assert sources.parse_model_source(spec).kind == kind


def test_unknown_random_architecture_fails_clearly():
    with pytest.raises(sources.SourceError, match=r"unknown architecture 'huge'.*random:bark-small"):
        sources.parse_model_source("random:huge")


def test_missing_folder_fails_clearly(tmp_path):
    source = sources.parse_model_source(str(tmp_path / "nope"))
    with pytest.raises(sources.SourceError, match="does not exist"):
        sources.load_model(source)


def test_hub_id_offline_and_uncached_fails_in_one_line(monkeypatch, tmp_path):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    source = sources.parse_model_source("barkbench-test/not-cached")
    with pytest.raises(sources.SourceError) as info:
        sources.load_model(source)
    message = str(info.value)
    assert "not in the local cache" in message and "--bark-model tiny" in message
    assert "\n" not in message


def test_built_folder_records_how_it_was_made(tiny_dir):
    assert json.loads((tiny_dir / "barkbench-source.json").read_text()) == {"arch": "tiny", "seed": 0}


def test_random_codec_decodes_different_codes_to_different_audio(tiny_source):
    # A fresh EnCodec has all-zero codebooks and decodes everything to the same audio; the built models don't.
    model = sources.load_model(tiny_source).eval()
    generator = torch.Generator().manual_seed(0)
    codes = [torch.randint(0, 1024, (1, 8, 20), generator=generator) for _ in range(2)]
    with torch.no_grad():
        first, second = (model.codec_decode(c) for c in codes)
    assert (first - second).abs().max() > 1e-3
