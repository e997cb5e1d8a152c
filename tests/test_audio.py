"""genreclf.data.audio: decoding to mono int16 at one rate, and converting one clip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from genreclf.data.audio import AUDIO_EXTENSIONS, AudioDecodeError, NoAudioError, convert_clip, decode_clip, read_wav
from genreclf.errors import DataError
from tests.support.helpers import tone, write_audio

FMA_CLIPS = ["000/000182.mp3", "001/001666.mp3"]


def dominant_frequency(samples: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * sample_rate / len(samples))


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@pytest.mark.parametrize("extension", [".wav", ".au", ".flac", ".mp3"])
@pytest.mark.parametrize("source_rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("target_rate", [22050, 16000])
def test_stereo_sine_becomes_mono_at_target_rate(tmp_path, extension, source_rate, target_rate):
    sine = tone(2.0, source_rate, frequency=440.0, amplitude=0.5)
    path = write_audio(tmp_path / f"sine{extension}", np.stack([sine, sine], axis=1), source_rate)

    samples = decode_clip(path, target_rate)

    assert samples.dtype == np.int16 and samples.ndim == 1
    assert len(samples) == 2 * target_rate
    assert dominant_frequency(samples, target_rate) == pytest.approx(440.0, abs=0.5)
    # A sine of amplitude 0.5 has an RMS of 0.5 / sqrt(2) of full scale (mp3 is lossy: looser).
    expected_rms = 0.5 / math.sqrt(2) * 32768
    assert rms(samples) == pytest.approx(expected_rms, rel=0.05 if extension == ".mp3" else 0.01)


def test_channels_are_averaged(tmp_path):
    left = np.random.default_rng(0).integers(-30000, 30000, 4000).astype(np.int16)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    path = write_audio(tmp_path / "left_only.wav", stereo, 22050)

    samples = decode_clip(path, 22050)

    np.testing.assert_array_equal(samples, np.round(left / 2).astype(np.int16))


@pytest.mark.parametrize("extension", [".wav", ".au", ".flac"])
def test_int16_at_the_target_rate_round_trips_exactly(tmp_path, extension):
    original = np.random.default_rng(1).integers(-32768, 32768, 5000).astype(np.int16)
    original[:2] = [-32768, 32767]
    path = write_audio(tmp_path / f"noise{extension}", original, 16000)

    np.testing.assert_array_equal(decode_clip(path, 16000), original)


def test_out_of_range_samples_are_rounded_and_clipped(tmp_path):
    values = np.array([1.5, -1.5, 0.25, -1.0, 0.99999, 0.4 / 32768, 0.6 / 32768])
    path = write_audio(tmp_path / "float.wav", values, 8000, subtype="FLOAT")

    samples = decode_clip(path, 8000)

    np.testing.assert_array_equal(samples, [32767, -32768, 8192, -32768, 32767, 0, 1])


@pytest.mark.parametrize("clip", FMA_CLIPS)
@pytest.mark.parametrize("target_rate", [22050, 44100])
def test_real_fma_mp3(shared_data, clip, target_rate):
    path = shared_data / "fma" / "fma_audio" / clip
    info = sf.info(path)
    assert (info.samplerate, info.channels) == (44100, 2)

    samples = decode_clip(path, target_rate)

    assert samples.dtype == np.int16
    assert len(samples) == math.ceil(info.frames * target_rate / info.samplerate)
    assert 29.0 < len(samples) / target_rate < 31.0
    assert rms(samples) > 1000  # music, not silence


def test_real_gtzan_wav_is_unchanged_at_its_own_rate(gtzan_mini):
    path = gtzan_mini / "blues" / "blues.00000.wav"
    original, rate = sf.read(path, dtype="int16")
    assert rate == 22050

    np.testing.assert_array_equal(decode_clip(path, 22050), original)


def librosa_reference(path, target_rate: int) -> np.ndarray:
    """What decode_clip replaced: librosa.load (mono, soxr_hq) then rounding and clipping in float64."""
    import librosa

    with sf.SoundFile(path) as audio_file:
        samples, _ = librosa.load(audio_file, sr=target_rate, mono=True, res_type="soxr_hq")
    return np.clip(np.round(samples.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("target_rate", [22050, 16000, 44100])
@pytest.mark.parametrize("clip", ["fma/fma_audio/000/000182.mp3", "gtzan_mini/jazz/jazz.00001.wav"])
def test_real_clips_decode_to_the_same_samples_as_librosa_load(shared_data, clip, target_rate):
    expected = librosa_reference(shared_data / clip, target_rate)

    np.testing.assert_array_equal(decode_clip(shared_data / clip, target_rate), expected)


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
@pytest.mark.parametrize("source_rate", [22050, 48000])
def test_any_channel_count_decodes_to_the_same_samples_as_librosa_load(tmp_path, channels, source_rate):
    noise = np.random.default_rng(channels).uniform(-1.0, 1.0, (source_rate // 4, channels))
    path = write_audio(tmp_path / "noise.wav", noise, source_rate, subtype="FLOAT")

    np.testing.assert_array_equal(decode_clip(path, 22050), librosa_reference(path, 22050))


def test_empty_file_has_no_audio(tmp_path):
    path = tmp_path / "empty.mp3"
    path.write_bytes(b"")
    with pytest.raises(NoAudioError, match="empty.mp3.*empty file"):
        decode_clip(path, 22050)


@pytest.mark.parametrize("name", ["garbage.mp3", "garbage.wav"])
def test_garbage_fails_to_decode(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(2).bytes(4000))
    with pytest.raises(AudioDecodeError, match=f"{name}: cannot decode audio: libsndfile") as caught:
        decode_clip(path, 22050)
    assert not isinstance(caught.value, NoAudioError)
    assert isinstance(caught.value, DataError)


def test_missing_file_and_bad_rate(tmp_path):
    with pytest.raises(AudioDecodeError, match="absent.wav.*file not found"):
        decode_clip(tmp_path / "absent.wav", 22050)
    path = write_audio(tmp_path / "ok.wav", tone(0.1, 8000), 8000)
    for bad_rate in (0, -22050, 22050.0, True):
        with pytest.raises(ValueError, match="sample_rate"):
            decode_clip(path, bad_rate)


def test_convert_clip_writes_pcm16_wav(tmp_path):
    src = write_audio(tmp_path / "in" / "clip.au", np.stack([tone(3.0, 8000)] * 2, axis=1), 8000)
    dst = tmp_path / "out" / "clip.wav"

    result = convert_clip(src, dst, 22050, 2.5)

    assert (result.ok, result.kind, result.reason, result.num_samples) == (True, "ok", "", 3 * 22050)
    info = sf.info(dst)
    assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", "PCM_16", 1, 22050)
    samples, rate = read_wav(dst)
    np.testing.assert_array_equal(samples, decode_clip(src, 22050))
    assert sorted(p.name for p in dst.parent.iterdir()) == ["clip.wav"]  # no temporary files left
    first = dst.read_bytes()
    convert_clip(src, dst, 22050, 2.5)
    assert dst.read_bytes() == first


@pytest.mark.parametrize(
    "name, content, kind, reason",
    [
        ("short.wav", "1s", "too_short", "too short: 1.00 s < 10.0 s"),
        ("empty.mp3", b"", "no_audio", "no audio: empty file (0 bytes)"),
        ("garbage.mp3", b"\x13\x37" * 3000, "decode_error", "decode failed: libsndfile cannot read it"),
        ("notes.txt", b"not audio", "not_audio", "not an audio file: extension '.txt'"),
    ],
)
def test_convert_clip_skips_bad_clips(tmp_path, name, content, kind, reason):
    src = tmp_path / name
    if content == "1s":
        write_audio(src, tone(1.0, 22050), 22050)
    else:
        src.write_bytes(content)
    dst = tmp_path / "out" / "clip.wav"

    result = convert_clip(src, dst, 22050, 10.0)

    assert not result.ok
    assert result.kind == kind
    assert result.reason.startswith(reason)
    assert result.num_samples == (22050 if kind == "too_short" else 0)
    assert not dst.exists()


def test_read_wav_rejects_stereo(tmp_path):
    path = write_audio(tmp_path / "stereo.wav", np.zeros((100, 2)), 8000)
    with pytest.raises(DataError, match="stereo.wav: expected mono 16-bit PCM, got 2 channels"):
        read_wav(path)


def test_audio_extensions():
    assert {".wav", ".au", ".mp3"} <= set(AUDIO_EXTENSIONS)
    assert all(e == e.lower() and e.startswith(".") for e in AUDIO_EXTENSIONS)
