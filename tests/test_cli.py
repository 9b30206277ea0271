import json

import pytest

from eegtune.cli import main


@pytest.mark.slow
def test_synth_prepare_info_end_to_end(tmp_path, capsys):
    bids, store = tmp_path / "bids", tmp_path / "store"
    assert main(["synth", "--out", str(bids), "--smoke-test", "--quiet", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "oracle floor" in out and (bids / "oracle.json").exists()
    assert main(["prepare", "--bids", str(bids), "--out", str(store), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "prepared 2 subjects" in out and "skipped      0 recording(s)" in out
    assert main(["info", str(store), "--verify"]) == 0
    assert "all checksums match" in capsys.readouterr().out
    assert main(["info", str(store), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    oracle = json.loads((bids / "oracle.json").read_text())
    assert manifest["challenges"]["1"]["windows"] == oracle["challenge1"]["n_trials"]

    # A file changed behind the store's back fails verification.
    victim = store / manifest["files"][0]["path"]
    victim.write_bytes(victim.read_bytes()[:-10])
    assert main(["info", str(store), "--verify"]) == 1
    assert "checksum mismatch" in capsys.readouterr().out


def test_info_on_a_folder_that_is_not_a_store(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_bad_synth_option_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path), "--sfreq", "250"])
    assert "invalid choice" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path), "--subjects", "0", "--quiet"]) == 2
    assert "--subjects must be at least 1" in capsys.readouterr().err
