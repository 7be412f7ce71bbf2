"""Audio-level quality of generated speech, offline: intelligibility and a reference-free MOS estimate.

Both models ship inside their PyPI packages (the ``audio`` extra), so nothing is downloaded at run time:

- Intelligibility: PocketSphinx's bundled US-English acoustic model, dictionary and language model transcribe the
  audio; ``jiwer`` gives the word error rate against the prompt's text (both sides normalized the same way:
  lower case, hyphens as spaces, punctuation removed).
- Speech quality: Microsoft's DNSMOS (``speechmos``' bundled ONNX models, run by onnxruntime): P.808 MOS and
  the P.835 signal / background / overall MOS, 1 (bad) to 5 (excellent), without a clean reference.

Both want 16 kHz mono; Bark's 24 kHz audio is resampled with ``scipy.signal.resample_poly``. They judge trained
checkpoints: a random-weight Bark makes noise, whose WER is ~1 and MOS low whatever the variant.

Nothing here imports torch: the functions take numpy arrays.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

#: The rate both recognizer and MOS predictor expect.
TARGET_RATE = 16_000
#: Import names the extra provides (speechmos declares no dependencies of its own: its DNSMOS module imports
#: librosa, onnxruntime and requests).
EXTRA_MODULES = ("pocketsphinx", "jiwer", "speechmos", "onnxruntime", "librosa", "requests")
INSTALL_HINT = "pip install 'barkbench[audio]'"


@dataclass(frozen=True)
class AudioScores:
    #: Word error rate of the recognizer's transcript against the prompt's text (0 = every word right; can
    #: exceed 1 when the transcript has extra words).
    wer: float
    transcript: str
    #: DNSMOS P.808 MOS (overall quality as listeners rate it under ITU-T P.808), 1 to 5.
    mos_p808: float
    #: DNSMOS P.835: speech signal, background noise and overall MOS, 1 to 5.
    mos_sig: float
    mos_bak: float
    mos_ovrl: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def missing_modules() -> list[str]:
    """The extra's modules that are not importable here (empty when the extra is installed)."""
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]


def resample(audio: Any, sample_rate: int, target: int = TARGET_RATE) -> Any:
    """Mono float32 at ``target`` Hz (polyphase, the ratio reduced: 24 kHz -> 16 kHz is up 2, down 3)."""
    import numpy as np
    from scipy.signal import resample_poly

    waveform = np.asarray(audio, dtype=np.float64).reshape(-1)
    if sample_rate != target:
        ratio = Fraction(target, sample_rate)
        waveform = resample_poly(waveform, ratio.numerator, ratio.denominator)
    return waveform.astype(np.float32)


def _normalize(text: str) -> str:
    import jiwer

    transform = jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.SubstituteRegexes({r"[-_/]": " "}),
            jiwer.RemovePunctuation(),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
        ]
    )
    return str(transform(text))


def word_error_rate(reference_text: str, transcript: str) -> float:
    """WER of ``transcript`` against ``reference_text`` after the same normalization; an empty transcript is 1."""
    import jiwer

    reference = _normalize(reference_text)
    if not reference:
        raise ValueError("the reference text has no words; the WER needs the prompt's text")
    hypothesis = _normalize(transcript)
    if not hypothesis:
        return 1.0
    return float(jiwer.wer(reference, hypothesis))


class AudioScorer:
    """Loads the recognizer and the MOS models once (a process scores several calls), then scores audio."""

    def __init__(self) -> None:
        missing = missing_modules()
        if missing:
            raise ImportError(f"audio metrics need the audio extra ({', '.join(missing)} missing): {INSTALL_HINT}")
        self._decoder: Any = None
        self._dnsmos: Any = None

    def transcribe(self, audio16k: Any) -> str:
        import numpy as np
        import pocketsphinx

        if self._decoder is None:
            # The package's own en-US model, dictionary and language model (pocketsphinx.get_model_path()).
            self._decoder = pocketsphinx.Decoder(samprate=TARGET_RATE, loglevel="FATAL")
        pcm = (np.clip(audio16k, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        self._decoder.start_utt()
        # full_utt: the whole clip at once, so cepstral mean normalization uses the whole utterance.
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return "" if hyp is None else str(hyp.hypstr)

    def mos(self, audio16k: Any) -> dict[str, float]:
        """DNSMOS figures of 16 kHz audio (speechmos' windowing: 9.01 s windows, a shorter clip repeated)."""
        import numpy as np

        if self._dnsmos is None:
            self._dnsmos = _dnsmos()
        clip = np.clip(np.asarray(audio16k, dtype=np.float32), -1.0, 1.0)
        scores = self._dnsmos(clip, TARGET_RATE, False)
        return {k: float(scores[k]) for k in ("p808_mos", "sig_mos", "bak_mos", "ovrl_mos")}

    def score(self, audio: Any, sample_rate: int, text: str) -> AudioScores:
        """WER against ``text`` and DNSMOS of ``audio`` (any rate, mono)."""
        audio16k = resample(audio, sample_rate)
        if audio16k.size < TARGET_RATE // 10:
            raise ValueError(f"audio of {audio16k.size / TARGET_RATE:.3f} s is too short to score (0.1 s at least)")
        transcript = self.transcribe(audio16k)
        mos = self.mos(audio16k)
        return AudioScores(
            wer=word_error_rate(text, transcript),
            transcript=transcript,
            mos_p808=mos["p808_mos"],
            mos_sig=mos["sig_mos"],
            mos_bak=mos["bak_mos"],
            mos_ovrl=mos["ovrl_mos"],
        )


def _dnsmos() -> Any:
    """speechmos' DNSMOS over its bundled ONNX files, with onnxruntime on one thread without spinning: the
    scorer runs after the timed rounds, and idle-spinning threads would only compete with other work."""
    import onnxruntime as ort
    from speechmos import dnsmos

    folder = os.path.join(os.path.dirname(os.path.abspath(dnsmos.__file__)), "dnsmos_models")

    class QuietDNSMOS(dnsmos.DNSMOS):
        def __init__(self, primary_model_path: str, p808_model_path: str) -> None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            cpu = ["CPUExecutionProvider"]
            self.primary_model_path = primary_model_path
            self.onnx_sess = ort.InferenceSession(primary_model_path, options, providers=cpu)
            self.p808_onnx_sess = ort.InferenceSession(p808_model_path, options, providers=cpu)

    return QuietDNSMOS(os.path.join(folder, "sig_bak_ovr.onnx"), os.path.join(folder, "model_v8.onnx"))
