"""Every conformance case of both vector sets, through the same runner as `metis check-parity`.

Tolerances are the manifest's: ids exactly, floats |a-b| <= atol + rtol*|b|.
"""

import json

import pytest

from metis_speech import conformance
from metis_speech.cli import main
from tests.conftest import HOLDOUT, PARITY


def _cases(root):
    if not (root / "manifest.json").exists():
        return []
    return list(json.loads((root / "manifest.json").read_text())["cases"])


@pytest.mark.parametrize("case", _cases(PARITY) or ["<no vectors>"])
def test_parity_case(parity_dir, case):
    manifest = conformance.load_manifest(parity_dir)
    res = conformance.run_case(case, manifest["cases"][case], parity_dir)
    assert res.passed, conformance.format_table([res])


@pytest.mark.parametrize("case", _cases(HOLDOUT) or ["<no vectors>"])
def test_holdout_case(holdout_dir, case):
    manifest = conformance.load_manifest(holdout_dir)
    res = conformance.run_case(case, manifest["cases"][case], holdout_dir)
    assert res.passed, conformance.format_table([res])


def test_check_parity_cli_table(parity_dir, capsys):
    rc = main(["check-parity", str(parity_dir), "--quiet", "--case", "t2s_forward_phone", "--case", "s2a_forward_layer2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "t2s_forward_phone" in out and "s2a_forward_layer2" in out and "PASS" in out
    assert "2/2 cases passed" in out


def test_check_parity_cli_fails_on_wrong_vectors(parity_dir, tmp_path, capsys):
    # a copy of one case whose expected logits are perturbed must fail with exit code 1
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    root = tmp_path / "vectors"
    (root / "cases").mkdir(parents=True)
    shutil.copytree(parity_dir / "weights", root / "weights")
    manifest = json.loads((parity_dir / "manifest.json").read_text())
    case = manifest["cases"]["t2s_forward_base"]
    t = load_file(str(parity_dir / case["vectors"]))
    t["logits"] = t["logits"] + 1e-3
    save_file(t, str(root / case["vectors"]))
    (root / "manifest.json").write_text(json.dumps({"cases": {"t2s_forward_base": case}}))
    rc = main(["check-parity", str(root), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAIL" in out and "logits" in out


def test_check_parity_cli_bad_directory(tmp_path, capsys):
    rc = main(["check-parity", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error:") and "manifest.json" in err and len(err.strip().splitlines()) == 1
