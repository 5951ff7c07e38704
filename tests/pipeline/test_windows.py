"""Long SE/TSE/VC inputs are generated in the windows that ``window_boundaries_s`` reports
(the steadiness metric in eval/steadiness.py measures loudness / voice at those seconds)."""

from metis_speech.pipeline import window_boundaries_s
from tests.pipeline.conftest import speechlike

SR = 16000


def test_pipeline_generates_in_the_windows_the_rule_gives(monkeypatch, tiny_bundle):
    """Metis.se on a 5.3 s input with 2 s windows: stage 1 runs once per window of
    window_boundaries_s, with the lengths the rule gives (100, 100, rest)."""
    import metis_speech.pipeline as pl
    from metis_speech.pipeline import Metis

    calls = []
    real = pl.stage1_generate

    def spy(model, lens, *a, **k):
        calls.append(list(lens))
        return real(model, lens, *a, **k)

    monkeypatch.setattr(pl, "stage1_generate", spy)
    m = Metis.from_pretrained("se", tiny_bundle, device="cpu")
    m.window_s, m.context_s = 2.0, 0.5
    x = speechlike(5.3, SR, 130, 3)
    out = m.se((x, SR), steps=1, s2a_steps=[1, 1], seed=0)
    assert len(calls) == len(window_boundaries_s(5.3, 2.0)) + 1 == 3
    assert [c[0] for c in calls[:2]] == [100, 100]
    assert abs(out.duration - 5.3) < 0.05
