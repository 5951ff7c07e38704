"""metis_speech: Metis, a masked generative foundation model for unified speech generation.

Axis names used in shape docstrings throughout the package:

    B  batch                      T   target frames (50 Hz)       Tp  prompt frames
    L  full sequence (phones + prompt + target)                  Np  phone ids
    H  hidden size                V   vocabulary (codebook) size  Q   RVQ layers (quantizers)
    C  frame-condition feature size                               S   audio samples
    N  video frames (25 fps)
"""

__version__ = "0.1.0"


def __getattr__(name):  # lazy: `from metis_speech import Metis` without importing torch up front
    if name in ("Metis", "SpeechOutput"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'metis_speech' has no attribute {name!r}")
