"""python -m bncourse.study through main(): list, status, export, verify; clean errors."""

import pytest

from bncourse.study.__main__ import main
from bncourse.study.experiments import get_experiment
from bncourse.study.runner import execute, plan
from bncourse.study.store import Store


def test_list_names_every_claim_and_its_experiments(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for cid in range(1, 16):
        assert f"\n{cid:2d}  " in "\n" + out
    assert "conditioning v1: runs per scale: smoke 6, book 15, study 60" in out
    assert "depth_sweep: not registered yet" in out


def test_an_unknown_claim_is_a_clean_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "1", "--store", str(tmp_path / "s.sqlite")])
    assert exit_info.value.code == 2
    assert "error: experiments_for: targets must be claim ids with a registered experiment" \
        in capsys.readouterr().err


def test_status_export_and_verify(capsys, tmp_path, toy_env):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        store.insert_many(execute(t) for t in plan([get_experiment("undo_normalization")], "smoke"))
    assert main(["status", "--store", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:5] == ["10", "smoke", "3", "0", "0"] for line in lines)
    # the book scale has the same setting and 10 seeds: the 3 smoke runs count for it too
    assert any(line.split()[:5] == ["10", "book", "3", "0", "7"] for line in lines)
    assert any(line.split()[:5] == ["14", "smoke", "0", "0", "6"] for line in lines)
    assert main(["export", "--store", str(path), "--out", str(tmp_path / "snap")]) == 0
    assert capsys.readouterr().out.strip().endswith("undo_normalization.csv")
    assert main(["verify", "--sample", "2", "--seed", "0", "--snapshot",
                 str(tmp_path / "snap")]) == 0
    assert "2 of 2 committed runs reproduced exactly" in capsys.readouterr().out
    assert main(["verify", "--snapshot", str(tmp_path / "empty")]) == 1
