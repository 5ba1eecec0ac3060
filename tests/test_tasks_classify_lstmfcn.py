"""LSTM-FCN (arch='lstm-fcn'), per-case normalisation, the validation policy and the DTW/MiniRocket baselines of
lstmkit classify (issue 21): masking, round trips, the estimator contract, the CLI and its errors."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

from sklearn.base import clone  # noqa: E402

from lstmkit.cli import main  # noqa: E402
from lstmkit.tasks.classify import SequenceClassifier  # noqa: E402
from lstmkit.tasks.classify.estimator import normalize_case  # noqa: E402
from lstmkit.tasks.classify.net import LSTMFCN, Ensemble, MaskedBatchNorm1d, resample  # noqa: E402
from lstmkit.tasks.devices import native_bf16  # noqa: E402

FCN = dict(arch="lstm-fcn", hidden_size=4, dropout=0.5, epochs=2, batch_size=8)
# float64: the padded and unpadded runs differ only in the order of the convolutions' sums (oneDNN may block
# a longer input differently); a few hundred terms of O(1) each in float64 leave ~1e-13, so 1e-10 is margin
RTOL64 = 1e-10


def shapes(n=24, channels=1, seed=0, lo=5, hi=15):
    """n variable-length cases (T_i, C) of two classes (a ramp up or down, plus noise), labels (n,)."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i in range(n):
        T = int(rng.integers(lo, hi))
        ramp = np.linspace(-1, 1, T)[:, None] * (1 if i % 2 else -1)
        X.append((ramp + 0.1 * rng.standard_normal((T, channels))).astype(np.float32))
        y.append(i % 2)
    return X, np.array(y)


def test_masked_pooling_gives_a_padded_case_the_logits_of_the_unpadded_one():
    torch.manual_seed(0)
    net = LSTMFCN(2, 3, steps=11, hidden_size=5).double().eval()
    cases = [torch.randn(T, 2, dtype=torch.float64) for T in (11, 4, 7, 1)]
    alone = torch.cat([net(c[None], torch.tensor([len(c)])) for c in cases])  # (4, 3), each unpadded
    padded = torch.full((4, 16, 2), 123.0, dtype=torch.float64)  # garbage after each case's end: must not count
    for i, c in enumerate(cases):
        padded[i, :len(c)] = c
    together = net(padded, torch.tensor([len(c) for c in cases]))
    np.testing.assert_allclose(together.detach().numpy(), alone.detach().numpy(), rtol=RTOL64, atol=RTOL64)


def test_masked_batch_norm_statistics_ignore_the_padding():
    torch.manual_seed(1)
    x = torch.randn(3, 4, 9, dtype=torch.float64)  # (B, F, T)
    lengths = torch.tensor([9, 2, 5])
    mask = (torch.arange(9)[None, :] < lengths[:, None]).unsqueeze(1).double()  # (B, 1, T)
    bn = MaskedBatchNorm1d(4).double().train()
    out = bn(x * mask + 50 * (1 - mask), mask)  # padding filled with 50: a leak would move the mean far
    valid = torch.cat([x[b, :, :int(n)] for b, n in enumerate(lengths)], dim=1)  # (F, 16 valid steps)
    ref = torch.nn.BatchNorm1d(4).double().train()
    expect = ref(valid[None])[0]  # the same normalisation over the valid steps alone
    got = torch.cat([out[b, :, :int(n)] for b, n in enumerate(lengths)], dim=1)
    np.testing.assert_allclose(got.detach().numpy(), expect.detach().numpy(), rtol=RTOL64, atol=RTOL64)
    np.testing.assert_allclose(bn.running_var.numpy(), ref.running_var.numpy(), rtol=RTOL64)


def test_resample_is_linear_interpolation_and_identity_at_full_length():
    x = torch.randn(2, 8, 3, dtype=torch.float64)
    assert torch.equal(resample(x, torch.tensor([8, 8]), 8), x)  # exact rational positions: no rounding
    got = resample(x, torch.tensor([8, 5]), 13)  # case 1: its 5 valid steps stretched over 13 points
    grid = np.linspace(0, 4, 13)
    expect = np.stack([np.interp(grid, np.arange(5), x[1, :5, c].numpy()) for c in range(3)], axis=1)
    np.testing.assert_allclose(got[1].numpy(), expect, rtol=1e-12, atol=1e-12)


def test_normalize_case_z_normalises_each_case_per_channel():
    rng = np.random.default_rng(0)
    s = (rng.standard_normal((50, 3)) * [1.0, 10.0, 0.0] + [5.0, -3.0, 7.0]).astype(np.float64)
    z = normalize_case(s)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(0)[:2], 1.0, rtol=1e-12)
    assert np.all(z[:, 2] == 0.0)  # a constant channel becomes 0, not NaN


@pytest.mark.parametrize("arch", ["lstm", "lstm-fcn"])
def test_per_case_normalisation_makes_the_model_blind_to_each_case_scale_and_offset(arch):
    X, y = shapes()
    clf = SequenceClassifier(**{**FCN, "arch": arch, "normalize": "case"}).fit(X, y)
    assert clf.config_["normalize"] == "case"
    moved = [x * (3.0 + i) - 2.0 * i for i, x in enumerate(X)]  # another gain and level per case
    # float32 z-normalisation of a*x+b equals that of x to a few ulp of O(1) values (~1e-6), which the net
    # carries to probabilities no larger: 1e-4 is margin
    np.testing.assert_allclose(clf.predict_proba(moved), clf.predict_proba(X), atol=1e-4)


def test_normalize_auto_is_per_case_for_univariate_and_global_for_multivariate():
    X1, y = shapes(channels=1)
    X3, _ = shapes(channels=3)
    auto = dict(FCN, normalize="auto", epochs=1)
    assert SequenceClassifier(**auto).fit(X1, y).config_["normalize"] == "case"
    assert SequenceClassifier(**auto).fit(X3, y).config_["normalize"] == "global"


def test_validation_policy_on_a_tiny_set_trains_the_fixed_schedule():
    X, y = shapes(n=30)
    clf = SequenceClassifier(**{**FCN, "epochs": 4, "patience": 1}).fit(X, y)  # auto: 15% of 30 is 5 < 50 cases
    assert clf.history_["validation"] == "fixed" and len(clf.history_["history"]) == 4  # no early stop
    assert not clf.history_["stopped_early"]
    rule = SequenceClassifier(validation="auto", val_fraction=0.15)
    assert rule._validation_used(326) == "fixed" and rule._validation_used(327) == "holdout"  # ceil(48.9), ceil(49.05)
    assert SequenceClassifier(validation="holdout")._validation_used(30) == "holdout"
    assert SequenceClassifier(validation="holdout", val_fraction=0)._validation_used(1000) == "fixed"


def test_kfold_picks_the_epoch_count_by_mean_fold_loss_then_refits_on_all():
    X, y = shapes(n=20)
    clf = SequenceClassifier(**{**FCN, "epochs": 3, "validation": "kfold", "n_folds": 2}).fit(X, y)
    curve = clf.config_["kfold_val_loss"]
    assert clf.history_["validation"] == "kfold" and len(curve) == 3
    assert clf.config_["epochs_used"] == int(np.argmin(curve)) + 1
    assert len(clf.history_["history"]) == clf.config_["epochs_used"]  # the refit: all 20 cases, that many epochs


def test_lstm_fcn_save_load_round_trip(tmp_path):
    X, y = shapes()
    clf = SequenceClassifier(**FCN).fit(X, y)
    clf.save(str(tmp_path / "m.safetensors"))
    back = SequenceClassifier.load(str(tmp_path / "m.safetensors"))
    assert back.arch == "lstm-fcn" and type(back.model_).__name__ == "LSTMFCN"
    assert back.config_["fcn_steps"] == max(len(x) for x in X)
    # the same weights through the same float32 code on the same inputs: equal to rounding at most
    np.testing.assert_allclose(back.predict_proba(X), clf.predict_proba(X), rtol=1e-6, atol=1e-7)
    longer = [np.concatenate([x, x]) for x in X[:3]]  # longer than any training case: resampled, not refused
    assert back.predict_proba(longer).shape == (3, 2)


def test_clone_and_get_params_carry_the_new_parameters():
    clf = SequenceClassifier(arch="lstm-fcn", normalize="case", validation="kfold", n_folds=3)
    params = clf.get_params()
    assert {k: params[k] for k in ("arch", "normalize", "validation", "n_folds")} == {
        "arch": "lstm-fcn", "normalize": "case", "validation": "kfold", "n_folds": 3}
    twin = clone(clf)
    assert twin.get_params() == params and twin is not clf
    assert twin.set_params(arch="lstm").arch == "lstm"


@pytest.mark.parametrize("kw, match", [
    (dict(arch="cnn"), "arch: expected one of 'lstm', 'lstm-fcn', got 'cnn'"),
    (dict(normalize="minmax"), "normalize: expected one of"),
    (dict(validation="early"), "validation: expected one of"),
    (dict(n_folds=1), "n_folds: expected an integer >= 2"),
    (dict(ensemble=0), "ensemble: expected a positive integer, got 0"),
    (dict(ensemble=2.0), "ensemble: expected a positive integer, got 2.0"),
    (dict(ensemble=True), "ensemble: expected a positive integer, got True"),
    (dict(lr_schedule="step"), "lr_schedule: expected one of 'constant', 'cosine', 'plateau', got 'step'"),
    (dict(precision="float16"), "precision: expected one of 'float32', 'bfloat16', 'auto', got 'float16'"),
    (dict(precision="bfloat16"), "precision='bfloat16' is for the LSTM-FCN's convolutions"),
])
def test_bad_arguments_are_named(kw, match):
    X, y = shapes(n=8)
    with pytest.raises(ValueError, match=match):
        SequenceClassifier(**kw).fit(X, y)


def test_text_refuses_lstm_fcn_and_per_case_normalisation():
    texts, labels = ["ab", "cd"] * 5, ["0", "1"] * 5
    with pytest.raises(ValueError, match="arch='lstm-fcn' is for numeric sequences"):
        SequenceClassifier(text=True, arch="lstm-fcn").fit(texts, labels)
    with pytest.raises(ValueError, match="normalize='case' is for numeric"):
        SequenceClassifier(text=True, normalize="case").fit(texts, labels)
    with pytest.raises(ValueError, match="steps: expected a positive integer"):
        LSTMFCN(1, 2, steps=0)


def test_plateau_schedule_on_the_training_loss_needs_no_held_out_cases():
    X, y = shapes(n=16)
    clf = SequenceClassifier(**{**FCN, "epochs": 6, "lr_schedule": "plateau"}).fit(X, y)
    hist = clf.history_["history"]
    assert clf.history_["validation"] == "fixed" and all(h["val_loss"] == h["train_loss"] for h in hist)
    assert hist[0]["lr"] == clf.lr and all(clf.lr / 10 <= h["lr"] <= clf.lr for h in hist)
    assert isinstance(clf.history_["converged"], bool) and len(hist) <= 6


def test_kfold_with_fewer_cases_than_folds_is_named():
    """The message named n_folds but not the validation policy that asked for folds, nor the classes' counts."""
    X, y = shapes(n=4)
    counts = ", ".join(f"{c} {k}" for c, k in zip(*np.unique(y, return_counts=True)))
    with pytest.raises(ValueError, match=rf"validation='kfold': n_folds=5 folds need at least 5 sequences, got 4 "
                                         rf"\(cases per class: {counts}\); lower n_folds or use validation='fixed'"):
        SequenceClassifier(**{**FCN, "validation": "kfold"}).fit(X, y)
    with pytest.raises(ValueError, match=r"got 1 \(cases per class: b 1\)"):
        SequenceClassifier(**{**FCN, "validation": "kfold", "n_folds": 2}).fit(X[:1], ["b"])


def test_kfold_says_when_a_class_is_too_small_to_stratify():
    """With a class of fewer cases than folds the folds fell back to unstratified ones without a word (a fold may
    train without that class)."""
    X, _ = shapes(n=6)
    lines, y = [], np.array(["a"] * 5 + ["b"])
    SequenceClassifier(**{**FCN, "epochs": 1, "validation": "kfold", "n_folds": 2}).fit(X, y, log=lines.append)
    assert "validation='kfold': folds not stratified, a class has fewer than n_folds=2 cases (cases per class: " \
           "a 5, b 1)" in lines


def _aeon_set(name):
    from lstmkit.tasks.classify.data import _aeon_data_dir

    return os.path.join(_aeon_data_dir(), name, f"{name}_TEST.ts")


def test_cli_lstm_fcn_on_a_tiny_variable_length_set_then_predict_and_report(tmp_path, capsys):
    pytest.importorskip("aeon")
    out = str(tmp_path / "run")
    assert main(["classify", "--dataset", "PickupGestureWiimoteZ", "--limit", "20", "--arch", "lstm-fcn",
                 "--epochs", "1", "--baselines", "logistic", "--out", out, "--no-progress"]) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    cfg = res["config"]
    assert cfg["arch"] == "lstm-fcn" and cfg["hidden_size"] == 8 and cfg["dropout"] == 0.8  # the arch's preset
    assert cfg["normalize"] == "case" and cfg["validation_used"] == "fixed" and cfg["epochs"] == 1  # flag wins
    assert cfg["lr_schedule"] == "plateau" and cfg["ensemble"] == 3 and "ensemble of 3" in res["table"][0]["model"]
    assert cfg["precision"] == "auto" and cfg["precision_used"] == ("bfloat16" if native_bf16() else "float32")
    assert ("bfloat16 convolutions" in res["table"][0]["model"]) == native_bf16()
    assert res["table"][0]["model"].startswith("LSTM-FCN") and res["table"][0]["seconds"] > 0
    pred = tmp_path / "pred.csv"
    assert main(["predict", "--model", os.path.join(out, "model.safetensors"), "--ts",
                 _aeon_set("PickupGestureWiimoteZ"), "--output", str(pred)]) == 0
    assert len(pred.read_text().splitlines()) == 51  # header + the 50 test cases
    np.save(tmp_path / "x.npy", np.zeros((30, 1)))
    capsys.readouterr()
    assert main(["report", out, "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "r.html")]) == 2
    assert "LSTM-FCN classifier (arch='lstm-fcn')" in capsys.readouterr().err


def test_report_standardises_per_case_like_training(tmp_path):
    from lstmkit.commands._task_model import scaled

    X, y = shapes(n=12)
    clf = SequenceClassifier(hidden_size=4, epochs=1, normalize="case").fit(X, y)
    path = str(tmp_path / "m.safetensors")
    clf.save(path)
    raw = X[0] * 4.0 + 3.0  # (T, 1)
    cfg = clf.config_
    expect = (normalize_case(raw) - np.asarray(cfg["mean"])) / np.asarray(cfg["std"])
    np.testing.assert_allclose(scaled(path, raw.astype(np.float64), "x.npy", 0), expect, rtol=1e-5, atol=1e-6)
    # the same case in a (T, B, C) batch of two, and batch-first (B, T, C): z-normalised over its own steps, not
    # across the batch (a (T, 1, C) file once became constants: the mean over its one-case axis is the value)
    second = raw[::-1] * 2.0 - 1.0
    both = np.stack([raw, second], axis=1).astype(np.float64)  # (T, 2, 1)
    other = (normalize_case(second) - np.asarray(cfg["mean"])) / np.asarray(cfg["std"])
    for x, axis, case in [(both, 0, lambda a, k: a[:, k]), (both.transpose(1, 0, 2), 1, lambda a, k: a[k])]:
        got = scaled(path, x, "x.npy", axis)
        np.testing.assert_allclose(case(got, 0), expect, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(case(got, 1), other, rtol=1e-5, atol=1e-6)


def test_cli_baselines_dtw_and_minirocket_and_bad_baselines(tmp_path, capsys):
    pytest.importorskip("aeon")
    out = str(tmp_path / "run")
    assert main(["classify", "--dataset", "PickupGestureWiimoteZ", "--limit", "20", "--epochs", "1",
                 "--hidden-size", "4", "--baselines", "dtw,minirocket", "--out", out, "--no-progress"]) == 0
    names = [r["model"] for r in json.load(open(os.path.join(out, "results.json")))["table"]]
    assert names[1:] == ["1-NN DTW (aeon, full window)", "MiniRocket (aeon)"]
    capsys.readouterr()
    assert main(["classify", "--dataset", "PickupGestureWiimoteZ", "--baselines", "dtw,knn", "--out",
                 str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "--baselines: expected 'auto', 'none' or a comma-separated list" in capsys.readouterr().err


def test_equal_length_resamples_to_the_longest_training_case():
    from lstmkit.tasks.classify.job import equal_length

    Xtr = [np.arange(10, dtype=np.float32)[:, None], np.arange(4, dtype=np.float32)[:, None]]
    tr, te, L = equal_length(Xtr, [np.arange(20, dtype=np.float32)[:, None]])
    assert L == 10 and tr.shape == (2, 1, 10) and te.shape == (1, 1, 10)
    np.testing.assert_allclose(tr[0, 0], np.arange(10))  # already that long: unchanged
    np.testing.assert_allclose(tr[1, 0], np.linspace(0, 3, 10), rtol=1e-12)  # a ramp stays a ramp
    np.testing.assert_allclose(te[0, 0], np.linspace(0, 19, 10), rtol=1e-12)
    assert equal_length([np.zeros((3, 2))], [np.zeros((3, 2))])[2] == 9  # MiniRocket's shortest input


# float32 softmax and log-softmax of O(1) logits, averaged over 2-3 members: each probability carries a few
# float32 roundings (eps 6e-8) of values <= 1, so 1e-6 absolute is margin
ATOL32 = 1e-6


@pytest.mark.parametrize("arch", ["lstm-fcn", "lstm"])
def test_ensemble_averages_the_probabilities_of_members_trained_with_consecutive_seeds(arch):
    X, y = shapes(n=20)
    kw = {**FCN, "arch": arch}
    clf = SequenceClassifier(**kw, ensemble=3, seed=5).fit(X, y)
    assert type(clf.model_) is Ensemble and len(clf.model_.members) == 3 and clf.config_["ensemble"] == 3
    assert len(clf.history_["members"]) == 3 and "member" not in clf.config_
    singles = [SequenceClassifier(**kw, seed=5 + k).fit(X, y) for k in range(3)]
    each = np.stack([s.predict_proba(X) for s in singles])  # (3, N, C): member k is the seed-(5+k) model
    np.testing.assert_allclose(clf.predict_proba(X), each.mean(0), atol=ATOL32)
    np.testing.assert_array_equal(clf.predict_members(X), np.stack([s.predict(X) for s in singles]))
    assert clf.predict_members(X[:4]).shape == (3, 4)
    assert singles[0].predict_members(X[:4]).shape == (1, 4)  # one network: one row


def test_ensemble_module_is_the_log_of_the_mean_probability():
    torch.manual_seed(0)

    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, x, lengths):
            return self.logits

    a, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    out = Ensemble([Fixed(a), Fixed(b)])(None, None)
    expect = (torch.softmax(a, -1) + torch.softmax(b, -1)) / 2
    torch.testing.assert_close(torch.softmax(out, -1), expect, rtol=1e-12, atol=1e-14)  # float64 rounding
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(4, dtype=torch.float64), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="members: expected at least one network, got none"):
        Ensemble([])


def test_ensemble_save_load_round_trip(tmp_path):
    X, y = shapes()
    clf = SequenceClassifier(**FCN, ensemble=2).fit(X, y)
    clf.save(str(tmp_path / "m.safetensors"))
    back = SequenceClassifier.load(str(tmp_path / "m.safetensors"))
    assert back.ensemble == 2 and type(back.model_) is Ensemble
    np.testing.assert_allclose(back.predict_proba(X), clf.predict_proba(X), atol=ATOL32)


def test_cli_ensemble_writes_members_that_load_alone_and_resumes(tmp_path, capsys):
    pytest.importorskip("aeon")
    out = str(tmp_path / "run")
    argv = ["classify", "--dataset", "PickupGestureWiimoteZ", "--limit", "16", "--arch", "lstm-fcn", "--epochs", "1",
            "--ensemble", "2", "--baselines", "none", "--out", out, "--no-progress"]
    assert main(argv) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["config"]["ensemble"] == 2 and res["config"]["seed"] == 0 and len(res["member_accuracies"]) == 2
    assert "ensemble of 2" in res["table"][0]["model"]
    whole = SequenceClassifier.load(os.path.join(out, "model.safetensors"))
    Xte = [np.sin(np.linspace(0, 3, 30))[:, None].astype(np.float32)]
    for k in range(2):  # each member's checkpoint is a one-network model: its seed's
        member = SequenceClassifier.load(os.path.join(out, f"member-{k}", "best.safetensors"))
        assert member.config_["ensemble"] == 1 and member.config_["member"] == k and member.config_["seed"] == k
        np.testing.assert_allclose(member.predict_proba(Xte)[0],
                                   whole._proba(whole.model_.members[k], Xte)[0], atol=ATOL32)
    assert main(argv[:-3] + ["--resume", "--out", out, "--no-progress"]) == 0  # both members done: nothing reruns
    again = json.load(open(os.path.join(out, "results.json")))
    assert again["member_accuracies"] == res["member_accuracies"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # argparse refuses it before any work
        main(argv[:-5] + ["--ensemble", "0", "--out", str(tmp_path / "bad")])
    assert e.value.code == 2
    assert "argument --ensemble: expected a positive integer, got 0" in capsys.readouterr().err


def test_report_refuses_an_ensemble_by_name(tmp_path, capsys):
    X, y = shapes(n=12)
    path = str(tmp_path / "m.safetensors")
    SequenceClassifier(hidden_size=4, epochs=1, ensemble=2).fit(X, y).save(path)
    np.save(tmp_path / "x.npy", np.zeros((10, 1)))
    assert main(["report", path, "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "r.html")]) == 2
    assert "an ensemble of 2 networks (ensemble=2)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- bfloat16 convolutions


def test_bfloat16_convolutions_err_by_at_most_bfloat16_rounding_and_only_while_training():
    """precision='bfloat16' rounds a conv's input and weights to bfloat16 (relative error <= 2^-9 each) and
    accumulates in float32: each output is off by at most (2·2^-9 + 2^-18)·Σ|w||x| plus float32 sums' error,
    bounded here by 2^-7·Σ|w||x|. Batch norm, the rest of the net and evaluation stay float32: in eval mode the
    two precisions give the same bits."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    x = torch.randn(4, 40, 2)
    lengths = torch.tensor([40, 31, 40, 12])
    nets = [LSTMFCN(2, 3, 40, hidden_size=4).train_convolutions_in(p) for p in ("float32", "bfloat16")]
    nets[1].load_state_dict(nets[0].state_dict())
    seen = {}
    for name, net in zip(("float32", "bfloat16"), nets):
        net.blocks[0].conv.register_forward_hook(lambda m, a, out, name=name: seen.update({name: (a[0], out)}))
        net.train()(x, lengths)
    inp, ref = seen["float32"]
    got = seen["bfloat16"][1]
    assert got.dtype == torch.bfloat16 or got.dtype == torch.float32  # autocast's output, cast back after
    conv = nets[0].blocks[0].conv
    scale = torch.nn.functional.conv1d(inp.abs(), conv.weight.abs(), conv.bias.abs())  # Σ|w||x| + |b|
    err = (got.float() - ref).abs().detach()
    assert bool((err <= 2.0 ** -7 * scale + 1e-6).all()) and float(err.max()) > 0  # bfloat16 really ran
    nets[1].load_state_dict(nets[0].state_dict())  # the same weights and running statistics, then evaluation
    for net in nets:
        net.eval()
    torch.testing.assert_close(nets[1](x, lengths), nets[0](x, lengths), rtol=0, atol=0)


def test_bfloat16_training_learns_and_predicts_in_float32(monkeypatch):
    pytest.importorskip("torch")
    X, y = shapes(n=24)
    fp32 = SequenceClassifier(**{**FCN, "epochs": 8, "lr": 1e-2}).fit(X, y)
    bf16 = SequenceClassifier(**{**FCN, "epochs": 8, "lr": 1e-2, "precision": "bfloat16"}).fit(X, y)
    assert fp32.history_["precision"] == "float32" and bf16.history_["precision"] == "bfloat16"
    losses = [[h["train_loss"] for h in c.history_["history"]] for c in (fp32, bf16)]
    assert losses[1][-1] < losses[1][0]  # it learns
    assert abs(losses[1][-1] - losses[0][-1]) < 0.25 * losses[0][0]  # and follows float32's curve
    assert bf16.predict_proba(X).dtype == np.float64 and bf16.score(X, y) >= 0.5
    for native, used in ((True, "bfloat16"), (False, "float32")):  # 'auto' follows the CPU
        monkeypatch.setattr("lstmkit.tasks.devices.native_bf16", lambda native=native: native)
        clf = SequenceClassifier(**{**FCN, "epochs": 1, "precision": "auto"}).fit(X, y)
        assert clf.history_["precision"] == used and clf.config_["precision_used"] == used
    plain = SequenceClassifier(hidden_size=4, epochs=1, precision="auto").fit(X, y)
    assert plain.history_["precision"] == "float32"  # no convolutions: nothing to round


def test_kfold_folds_train_in_the_chosen_precision(monkeypatch):
    pytest.importorskip("torch")
    calls = []
    real = LSTMFCN.train_convolutions_in
    monkeypatch.setattr(LSTMFCN, "train_convolutions_in", lambda self, p: calls.append(p) or real(self, p))
    X, y = shapes(n=12)
    SequenceClassifier(**{**FCN, "epochs": 1, "validation": "kfold", "n_folds": 2, "precision": "bfloat16"}).fit(X, y)
    assert calls == ["bfloat16"] * 3  # two folds, then the final fit
    with pytest.raises(ValueError, match="precision: expected one of 'float32', 'bfloat16'"):
        LSTMFCN(1, 2, 10).train_convolutions_in("auto")
