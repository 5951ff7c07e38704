"""`metis doctor`: one line per part, each with its fix when the part is missing."""

import pytest

from metis_speech import doctor
from metis_speech.cli import main


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_report_has_one_line_per_part(offline_cache, capsys):
    rc = main(["doctor"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("metis-speech ")
    names = [ln[6:].split()[0] for ln in out[1:] if ln[:4].strip() in ("ok", "warn", "fail")]
    for part in ("torch", "espeak-ng", "ffmpeg", "pocketsphinx", "resemblyzer", "speechmos", "pesq", "pystoi",
                 "shipped", "official", "hub"):
        assert part in names, part
    assert "threads" in " ".join(out)
    # nothing is cached in this empty Hub cache: every official task says how to get it
    official = [ln for ln in out if "official " in ln[:30]]
    assert official and all(ln.startswith("warn") and "fix: metis download" in ln for ln in official)
    # the README's first command can run here (the suite itself needs torch, espeak-ng and the shipped model)
    assert rc == 0


def test_missing_parts_say_how_to_fix(offline_cache, monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    (ff,) = doctor.check_ffmpeg()
    assert ff.status == "warn" and "apt-get install ffmpeg" in doctor.format_check(ff)

    real = doctor._import

    def broken(name):
        if name in ("pesq", "phonemizer"):
            raise ImportError(f"No module named {name!r}")
        return real(name)

    monkeypatch.setattr(doctor, "_import", broken)
    pesq = [c for c in doctor.check_eval() if c.name == "pesq"][0]
    line = doctor.format_check(pesq)
    assert pesq.status == "warn" and 'pip install "metis-speech[eval]"' in line and "\n" not in line
    (ph,) = doctor.check_espeak()
    assert ph.status == "fail" and "pip install phonemizer" in doctor.format_check(ph)


def test_missing_espeak_fails_with_the_pip_fix(monkeypatch):
    from metis_speech.text import espeak

    monkeypatch.setattr(espeak, "library", lambda: espeak.Library("missing"))
    (c,) = doctor.check_espeak()
    assert c.status == "fail" and "pip install espeakng-loader" in doctor.format_check(c)


def test_missing_shipped_model_fails_the_exit_status(offline_cache, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("metis_speech.shipped.SMALL_MODEL_DIR", tmp_path / "absent")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "fail  shipped model" in out and "problem(s)" in out


def test_network_is_checked_only_when_asked(offline_cache, monkeypatch):
    import socket

    calls = []

    def refused(*a, **k):
        calls.append(a)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    (c,) = doctor.check_network(False)
    assert c.status == "ok" and "not contacted" in c.detail and not calls
    (c,) = doctor.check_network(True)
    assert c.status == "warn" and calls and "--model small" in doctor.format_check(c)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (c,) = doctor.check_network(True)
    assert "HF_HUB_OFFLINE" in c.detail
