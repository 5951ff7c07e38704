"""Optional backends: clear one-line errors when missing, and the WavLM path on a tiny local model."""

import importlib.util

import numpy as np
import pytest

from metis_speech.eval.backends import BackendMissingError, need


def test_missing_package_message_names_the_pip_package():
    with pytest.raises(BackendMissingError, match=r"PESQ needs the 'pesq_not_here' package: pip install pesq_not_here"):
        need("pesq_not_here", "pesq_not_here", "PESQ")


def test_whisper_and_wavlm_missing_local_folders_fail_fast(tmp_path):
    from metis_speech.eval.asr import WhisperASR
    from metis_speech.eval.speaker import WavLMSV

    with pytest.raises(BackendMissingError, match="no such folder"):
        WhisperASR(model=str(tmp_path / "whisper-large-v3"))
    with pytest.raises(BackendMissingError, match="no such folder"):
        WavLMSV(model=str(tmp_path / "wavlm"))


def test_paraformer_without_funasr():
    if importlib.util.find_spec("funasr") is not None:
        pytest.skip("funasr is installed here; this test checks the message when it is not")
    from metis_speech.eval.asr import get_asr

    with pytest.raises(BackendMissingError, match="pip install funasr"):
        get_asr("paraformer", None, "zh")


def test_wavlm_backend_on_a_tiny_random_local_model(tmp_path, clips):
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    from metis_speech.audio import load_audio
    from metis_speech.eval.speaker import speaker_similarity

    cfg = WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                      conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16,
                      num_conv_pos_embedding_groups=2, tdnn_dim=(16, 16), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1),
                      xvector_output_dim=8)
    WavLMForXVector(cfg).save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(tmp_path)
    a = load_audio(clips[("awb", "a")], 16000)[0]
    b = load_audio(clips[("slt", "b")], 16000)[0]
    assert speaker_similarity(a, a, backend="wavlm", model=str(tmp_path)) == pytest.approx(1.0, abs=1e-5)
    sim = speaker_similarity(a, b, backend="wavlm", model=str(tmp_path))
    assert -1.0 <= sim <= 1.0 and np.isfinite(sim)
