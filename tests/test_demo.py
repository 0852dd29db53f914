"""The demo: trains every method, explains, writes the report; reuses finished runs."""

from pellucid.demo import EXPLAIN_RUN, run_demo


def test_demo_trains_explains_reports_then_reuses(tmp_path, capsys):
    kwargs = dict(epochs=1, n_explain=3, explain_iterations=3, limit=300, n_adversarial=60)
    kwargs |= dict(adversarial_detectors=["logistic", "prototype"])  # no forest: ~20 s less
    first = run_demo(tmp_path, **kwargs)
    out = capsys.readouterr().out
    assert "test acc" in out and str(tmp_path.resolve()) in out and "report:" in out
    assert "\nsanity     " not in out and "sanity check: rank correlation" in out  # no run row
    assert {"standard", "csg", EXPLAIN_RUN} <= set(first)
    assert 0.0 <= first["standard"]["test_accuracy"] <= 1.0
    assert {"neuromask", "gradcam", "occlusion", "centre"} <= set(first["explanations"])
    html = (tmp_path / "report.html").read_text()
    assert 'id="explanations"' in html and 'id="filters"' in html and "csg" in html
    detected = first["adversarial"]  # the runs with enough correct test images
    assert detected and set(detected) <= {"standard", "csg", "decoupling"}
    for name, res in detected.items():
        assert (tmp_path / name / "adversarial.json").is_file()
        assert [a["attack"] for a in res["attacks"]] == ["fgsm", "pgd", "cw"]
        assert all(set(s) == {"logistic", "prototype"} for s in res["attacks"][0]["auc"].values())
    assert 'id="adversarial"' in html and "gate-groups" in html or "csg" not in detected
    assert set(first["sanity"]) == {
        "gradcam",
        "saliency",
        "integrated-gradients",
        "centre",
        "random",
    }
    assert first["sanity"]["random"]["full"]["mean"] == 1.0  # the control ignores the model
    assert 'id="sanity"' in html and (tmp_path / EXPLAIN_RUN / "sanity" / "sanity.json").is_file()
    loc = first["localisation"]
    assert set(loc) == {"cam", "gradient"} and "localisation of the digit" in out
    for protocol, r in loc.items():
        assert 0.0 <= r["mean_iou"] <= 1.0 and 0.0 <= r["pointing_game"] <= 1.0, protocol
        assert r["n"] > 0
    assert 'id="localisation"' in html
    mtime = (tmp_path / "standard" / "model.safetensors").stat().st_mtime
    again = run_demo(tmp_path, **kwargs, report=False)  # the report was checked above
    assert "reusing finished run" in capsys.readouterr().out
    assert again["standard"] == first["standard"]
    assert again["localisation"] == first["localisation"]  # reused from the saved files
    assert (tmp_path / "standard" / "model.safetensors").stat().st_mtime == mtime


def test_summary_shows_the_first_detector_scored_when_the_logistic_is_not(capsys, tmp_path):
    from pellucid.demo import _print_summary

    auc = {"logits": {"prototype": 0.75, "lid": 0.5}}
    res = {"features": {"logits": 3}, "attacks": [{"attack": "fgsm", "auc": auc}]}
    _print_summary({"adversarial": {"csg": res}}, tmp_path, 1.0)
    out = capsys.readouterr().out
    assert "ROC-AUC of the prototype detector\n" in out
    assert "csg           logits           0.7500" in out
