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


def _suggested_params(space_name: str, n_trials: int = 64) -> dict[str, object]:
    """Every parameter the space's own define function suggests, asked of Optuna directly
    (random trials, so conditional parameters show up too), with its distribution."""
    import optuna

    from eegtune.search_spaces import get_space

    define = get_space(space_name).define
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    params: dict[str, object] = {}
    for _ in range(n_trials):
        trial = study.ask()
        define(trial)
        params.update(trial.distributions)
        study.tell(trial, 0.0)
    return params


def test_spaces_lists_every_registered_space(capsys):
    from eegtune.search_spaces import list_spaces

    assert main(["spaces"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    spaces = list_spaces()
    assert len(spaces) >= 4 and len(lines) == len(spaces)
    for space, line in zip(spaces, lines, strict=True):
        # One line per space: its versioned label, the challenges it serves, what it is.
        assert line.split()[0] == f"{space.name}/v{space.version}"
        assert line.split()[1] == "C" + ",".join(str(c) for c in space.challenges)
        assert space.description in line
    names = [line.split("/")[0] for line in lines]
    assert {"sparse_attention", "softargmax_tcn", "eegnex_recipe", "zoo"} <= set(names)
    # softargmax_tcn predicts a response time: it serves Challenge 1 only.
    assert next(line for line in lines if line.startswith("softargmax_tcn/")).split()[1] == "C1"


def test_spaces_show_lists_the_parameters_of_one_space(capsys):
    assert main(["spaces", "--show", "sparse_attention"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("sparse_attention/v2 (challenges 1, 2)")
    # name -> rest of the line, for the indented parameter rows.
    rows = {
        line.split()[0]: line.split(maxsplit=1)[1] for line in lines[1:] if line.startswith("  ")
    }
    expected = _suggested_params("sparse_attention")
    assert {"model.head_ratio", "lr", "model.pattern"} <= set(expected)
    assert set(expected) <= set(rows), set(expected) - set(rows)
    lr, ratio = expected["lr"], expected["model.head_ratio"]
    assert rows["lr"] == f"float [{lr.low:g}, {lr.high:g}] log"
    assert rows["model.head_ratio"].startswith(f"float [{ratio.low:g}, {ratio.high:g}]")
    pattern = expected["model.pattern"]
    assert rows["model.pattern"] == f"categorical [{', '.join(map(str, pattern.choices))}]"
    assert rows["model"] == "constant sparse_attention"
    # The group learning rates, beside head_ratio.
    assert rows["lr_mult.attention"] == rows["lr_mult.head"] == "float [0.1, 10] log"
    assert rows["warmup_epochs"] == "float [0, 2]"
    assert lines[-1].startswith("example (seed 0): {")


def test_spaces_show_an_unknown_name_is_a_clear_error(capsys):
    assert main(["spaces", "--show", "no_such_space"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith("eegtune spaces: error: unknown search space 'no_such_space'")
    assert "sparse_attention" in err and "Traceback" not in err
