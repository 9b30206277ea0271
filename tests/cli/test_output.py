"""What the CLI shows a person: one exit code for refused requests, tracebacks for bugs,
log levels that follow -q and -v, defaults in --help, and no progress bar off a terminal."""

from __future__ import annotations

import logging

import pytest

from eegtune.cli import main
from eegtune.errors import ConfigError, EegtuneError


def test_a_refused_request_exits_2_with_its_message_and_a_bug_keeps_its_traceback(
    monkeypatch, capsys
):
    import eegtune.cli.search_commands as commands

    def refuse(args):
        raise ConfigError("--set lr=-1: lr must be > 0")

    monkeypatch.setattr(commands, "cmd_spaces", refuse)
    assert main(["spaces"]) == 2
    assert capsys.readouterr().err.strip() == "eegtune spaces: error: --set lr=-1: lr must be > 0"

    def bug(args):
        raise ValueError("an index out of range deep in numpy")

    monkeypatch.setattr(commands, "cmd_spaces", bug)
    # A ValueError that is not eegtune's is a bug, not a "user error": it is not swallowed.
    with pytest.raises(ValueError, match="deep in numpy"):
        main(["spaces"])


def test_every_user_facing_error_type_is_an_eegtune_error():
    from eegtune.data.errors import DatasetError, RecordingError
    from eegtune.data.prepare import StrictModeError
    from eegtune.distributed.resources import ResourceError
    from eegtune.ensembles.errors import EnsembleError
    from eegtune.errors import ExperimentError, MissingFileError

    for kind in (DatasetError, StrictModeError, ResourceError, EnsembleError, ExperimentError,
                 MissingFileError, ConfigError):  # fmt: skip
        assert issubclass(kind, EegtuneError), kind
    assert issubclass(RecordingError, EegtuneError)


@pytest.mark.parametrize(
    ("flags", "shown"),
    [([], {"INFO", "WARNING"}), (["-q"], {"WARNING"}), (["-v"], {"DEBUG", "INFO", "WARNING"})],
)
def test_quiet_and_verbose_set_what_the_library_logs_reach(monkeypatch, capsys, flags, shown):
    import eegtune.cli.search_commands as commands

    def speak(args):
        log = logging.getLogger("eegtune.some.module")
        for level in ("DEBUG", "INFO", "WARNING"):
            log.log(getattr(logging, level), level)
        return 0

    monkeypatch.setattr(commands, "cmd_spaces", speak)
    assert main(["spaces", *flags]) == 0
    assert set(capsys.readouterr().err.split()) == shown


def test_help_shows_each_options_default(capsys):
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    wanted = {"--trials TRIALS": "20", "--folds FOLDS": "5", "--sampler {tpe,random}": "tpe"}
    for option, default in wanted.items():
        after = text.split(option)[-1]  # the option's own help line, past the usage
        assert f"default: {default})" in after[:300], (option, after[:300])


@pytest.mark.slow
def test_cv_piped_to_a_file_writes_a_line_per_fold_and_no_bar(prepared_store, tmp_path, capsys):
    out = tmp_path / "cv"
    args = ["cv", "--store", str(prepared_store), "--challenge", "1", "--model", "ridge_bandpower",
            "--folds", "2", "--out", str(out)]  # fmt: skip
    assert main(args) == 0  # pytest's captured stderr is not a terminal
    err = capsys.readouterr().err
    assert "\r" not in err and "epoch/s" not in err and "it/s" not in err  # no tqdm redraws
    lines = [line for line in err.splitlines() if "fold" in line and "done" in line]
    assert len(lines) == 2 and "fold 0 done" in lines[0] and "fold 1 done" in lines[1]
