from pellucid.demo import run_demo


def test_demo_trains_then_reuses_finished_runs(tmp_path, capsys):
    first = run_demo(tmp_path, epochs=1, quiet=False)
    out = capsys.readouterr().out
    assert "test acc" in out and str(tmp_path.resolve()) in out
    assert 0.5 < first["standard"]["test_accuracy"] <= 1.0  # one epoch already learns digits
    mtime = (tmp_path / "standard" / "model.safetensors").stat().st_mtime
    again = run_demo(tmp_path, epochs=1, quiet=False)
    assert "reusing finished run" in capsys.readouterr().out
    assert again["standard"] == first["standard"]
    assert (tmp_path / "standard" / "model.safetensors").stat().st_mtime == mtime
