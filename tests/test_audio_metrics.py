"""Audio metrics (intelligibility by PocketSphinx + jiwer, DNSMOS by speechmos) on real speech that no Bark model
made: espeak-ng's. Needs the ``audio`` extra (installed in the current stack's environment only) and the
``espeak-ng`` program (``.ci/run`` installs it)."""

from __future__ import annotations

import io
import shutil
import subprocess
from typing import Any

import numpy as np
import pytest

from barkbench.measure import audio_metrics, quality

# One sentence, one voice: each scoring costs ~1 s of CPU for the recognizer and ~1.5 s for DNSMOS (one
# 9 s window), so the three conditions below keep the file near 10 s. Measured (espeak-ng 1.51, voice en-us+f2,
# 150 wpm, pocketsphinx 5.1.1, speechmos 0.0.1.1): clean WER 0.167 ("please call me back tomorrow marking"),
# P.808 MOS 3.70, P.835 overall 2.97; with white noise at 5 dB SNR WER 1.0, P.808 2.49, overall 1.74;
# time-reversed WER 1.17, P.808 2.77, overall 2.63.
SENTENCE = "Please call me back tomorrow morning."
VOICE = "en-us+f2"
#: Clean WER bound: 0.167 measured (1 word of 6 wrong); 0.5 (3 words of 6) leaves room for another espeak-ng
#: or PocketSphinx build to miss two more words before the test calls the pipeline broken.
CLEAN_WER_MAX = 0.5
NOISE_SNR_DB = 5.0


def _extra_missing() -> str | None:
    missing = audio_metrics.missing_modules()
    if missing:
        return f"the audio extra is not installed ({', '.join(missing)} missing): {audio_metrics.INSTALL_HINT}"
    return None


def _speech_missing() -> str | None:
    if shutil.which("espeak-ng") is None:
        return "espeak-ng is not installed (apt-get install espeak-ng; .ci/run does it)"
    return _extra_missing()


needs_extra = pytest.mark.skipif(_extra_missing() is not None, reason=_extra_missing() or "")
needs_speech = pytest.mark.skipif(_speech_missing() is not None, reason=_speech_missing() or "")


def _espeak(text: str) -> tuple[Any, int]:
    import soundfile

    wav = subprocess.run(
        ["espeak-ng", "-v", VOICE, "-s", "150", "--stdout", text], capture_output=True, check=True, timeout=30
    ).stdout
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="float64")
    return audio, int(rate)


@pytest.fixture(scope="module")
def scored() -> dict[str, audio_metrics.AudioScores]:
    audio, rate = _espeak(SENTENCE)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(audio.size) * np.sqrt(np.mean(audio**2)) * 10 ** (-NOISE_SNR_DB / 20)
    # Through the function the quality calls use (one scorer per process), so the figures are the ones a
    # --bark-quality run records in extra_info.
    conditions = {"clean": audio, "noisy": audio + noise, "reversed": audio[::-1]}
    scores = {name: quality.audio_figures(x, rate, SENTENCE, random_model=False) for name, x in conditions.items()}
    return {name: audio_metrics.AudioScores(**figures) for name, figures in scores.items()}


@needs_speech
def test_clean_speech_is_intelligible(scored: dict[str, audio_metrics.AudioScores]) -> None:
    clean = scored["clean"]
    assert clean.wer <= CLEAN_WER_MAX, f"WER {clean.wer:.3f} of {clean.transcript!r}"
    assert "tomorrow" in clean.transcript


@needs_speech
@pytest.mark.parametrize("degraded", ["noisy", "reversed"])
def test_clean_speech_scores_better_than_degraded(scored: dict[str, audio_metrics.AudioScores], degraded: str) -> None:
    clean, worse = scored["clean"], scored[degraded]
    assert clean.wer < worse.wer, (clean.transcript, worse.transcript)
    assert clean.mos_p808 > worse.mos_p808
    assert clean.mos_ovrl > worse.mos_ovrl
    for value in (clean.mos_p808, clean.mos_sig, clean.mos_bak, clean.mos_ovrl):
        assert 1.0 <= value <= 5.0


@needs_extra
def test_wer_normalizes_both_sides() -> None:
    assert audio_metrics.word_error_rate("Let's try text-to-speech!", "lets try text to speech") == 0.0
    assert audio_metrics.word_error_rate("one two three four", "one two") == 0.5
    assert audio_metrics.word_error_rate("one two", "") == 1.0
    with pytest.raises(ValueError, match="no words"):
        audio_metrics.word_error_rate("...", "one")


def test_resample_to_16k() -> None:
    second = np.sin(2 * np.pi * 440 * np.arange(24_000) / 24_000)
    out = audio_metrics.resample(second, 24_000)
    assert out.dtype == np.float32 and out.shape == (16_000,)
    # The tone survives: its spectrum peaks at 440 Hz (1 Hz bins over one second).
    assert int(np.argmax(np.abs(np.fft.rfft(out)))) == 440


@needs_extra
def test_too_short_audio_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        audio_metrics.AudioScorer().score(np.zeros(100), 24_000, SENTENCE)


def test_random_models_and_a_missing_extra_are_skipped_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    silence = np.zeros(24_000)
    assert quality.audio_figures(silence, 24_000, SENTENCE, random_model=True) == {"skipped": quality.RANDOM_AUDIO_SKIP}
    monkeypatch.setattr(audio_metrics, "missing_modules", lambda: ["pocketsphinx"])
    figures = quality.audio_figures(silence, 24_000, SENTENCE, random_model=False)
    assert "pocketsphinx" in figures["skipped"] and "barkbench[audio]" in figures["skipped"]
