"""lstmkit generate end to end on a tiny slice; compressor baselines; sampling from a saved model."""
import json
import os

import pytest

pytest.importorskip("torch")

from lstmkit.cli import main  # noqa: E402
from lstmkit.tasks.generate.job import compressor_bpc  # noqa: E402


def test_generate_end_to_end_and_predict(tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["generate", "--limit", "12000", "--epochs", "1", "--batches-per-epoch", "2", "--hidden-size", "16",
            "--seq-len", "16", "--n-chars", "20", "--prompt", "def ", "--out", out, "--no-progress"]
    assert main(argv) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    names = [r["model"] for r in res["table"]]
    assert names[0].startswith("LSTM") and "xz (given the training text)" in names and "bz2 (test text alone)" in names
    assert all(r["bpc"] > 0 for r in res["table"])
    assert all(s.startswith("def ") and len(s) == 24 for s in res["samples"])
    capsys.readouterr()
    assert main(["predict", "--model", os.path.join(out, "model.safetensors"), "--prompt", "if", "--n-chars",
                 "10"]) == 0
    assert capsys.readouterr().out.startswith("if")
    # --seed: the sample of that seed (every call once printed seed 0's)
    from lstmkit.tasks.generate import CharLM

    lm = CharLM.load(os.path.join(out, "model.safetensors"))
    for seed in ("0", "7"):
        assert main(["predict", "--model", os.path.join(out, "model.safetensors"), "--prompt", "if", "--n-chars",
                     "40", "--temperature", "2", "--seed", seed]) == 0
        assert capsys.readouterr().out.strip() == lm.sample("if", 40, 2.0, 20, seed=int(seed))


def test_compressors_gain_from_training_text():
    train = "the quick brown fox jumps over the lazy dog. " * 200
    rows = {r["model"]: r["bpc"] for r in compressor_bpc(train, "the quick brown fox jumps over the lazy dog. " * 5)}
    assert rows["xz (given the training text)"] < rows["xz (test text alone)"]
    assert rows["bz2 (given the training text)"] < rows["bz2 (test text alone)"]


def test_match_model_predicts_repeats_from_the_past_only():
    import numpy as np

    from lstmkit.tasks.generate.match import match_predictions

    history, text = "the cat sat on the mat. ", "the cat sat on the hat."
    pointer, length = match_predictions(history, text, min_len=4)
    full = history + text
    starts = len(history) + np.arange(len(text))
    assert np.all(pointer < starts)  # never looks at the character it predicts or later
    assert np.all((pointer >= 0) == (length > 0))
    hits = [full[p] == c for p, c in zip(pointer, text) if p >= 0]
    assert sum(hits) >= len(text) - 10 and not all(hits)  # "hat" breaks the repeat of "mat"
    assert length.max() > 15


def test_match_mixer_learns_to_trust_a_reliable_match_and_is_causal():
    import numpy as np

    from lstmkit.tasks.generate.match import MatchMixer

    n, V = 400, 5
    probs = np.full((n, V), 1.0 / V)
    targets = np.arange(n) % V
    mixed = MatchMixer().mix(probs, targets, targets.copy(), np.full(n, 30))
    assert mixed[0] == 0.6 and mixed[-1] > 0.99  # prior weight 1/2, then learned
    changed = targets.copy()
    changed[200:] = (changed[200:] + 1) % V
    again = MatchMixer().mix(probs, changed, targets.copy(), np.full(n, 30))
    assert np.allclose(again[:200], mixed[:200]) and again[250] < mixed[250]


def test_dynamic_evaluation_adapts_a_copy_and_scores_before_learning():
    import numpy as np
    import torch

    from lstmkit.tasks.generate import CharLM

    text = "abcdefg" * 300
    lm = CharLM(hidden_size=16, embed_dim=8, epochs=1, batches_per_epoch=1, seq_len=16)
    lm.fit(text[:200], log=lambda *a: None)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    static = lm.next_char_probs(text[200:], text[:200])
    dynamic = lm.next_char_probs(text[200:], text[:200], dynamic_lr=1.0, segment=16)
    assert static.shape == dynamic.shape == (len(text) - 200, len(lm.config["vocab"]) + 1)
    assert np.allclose(dynamic.sum(1), 1, atol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    ids = lm.encode(text[200:])
    rows = np.arange(len(ids))
    assert np.allclose(dynamic[:16], static[:16], atol=1e-6)  # the first segment is scored before any update
    assert -np.log2(dynamic[rows, ids]).mean() < -np.log2(static[rows, ids]).mean() - 0.5


def test_rms_dynamic_evaluation_follows_the_paper_rule():
    """gradient_rms is the root mean square of each weight's gradient over the segments (computed again here by
    hand); RmsDynamicEval's step is θ − lr·∇/(rms + ε) + decay·rate·(θ₀ − θ); with it, next_char_probs scores the
    first segment before any update, adapts a copy, and learns the text as SGD's rule does."""
    import numpy as np
    import torch

    from lstmkit.tasks.generate import CharLM
    from lstmkit.tasks.generate.model import RmsDynamicEval

    text = "abcdefg" * 300
    lm = CharLM(hidden_size=16, embed_dim=8, epochs=1, batches_per_epoch=1, seq_len=16)
    lm.fit(text[:200], log=lambda *a: None)
    params = list(lm.model.parameters())
    rms = lm.gradient_rms(text[:48], segment=16)
    ids = torch.from_numpy(lm.encode(text[:48]))[None]
    squares, state = [torch.zeros_like(p) for p in params], None
    for i in range(0, 47, 16):
        lm.model.zero_grad()
        logits, state = lm.model(ids[:, i:min(i + 16, 47)], state)
        torch.nn.functional.cross_entropy(logits[0], ids[0, i + 1:i + 17]).backward()
        state = tuple(s.detach() for s in state)
        for sq, p in zip(squares, params):
            sq += p.grad.square()
    for r, sq in zip(rms, squares):
        torch.testing.assert_close(r, (sq / 3).sqrt())

    w = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    step = RmsDynamicEval([w], [torch.tensor([0.5, 1.0, 0.0])], lr=0.1, decay=0.2)
    w.grad = torch.tensor([1.0, 1.0, 0.0])
    with torch.no_grad():
        w -= torch.tensor([0.0, 0.0, 1.0])  # θ moved away from θ₀ before this step (weight 3 by −1)
    step.step()
    rate = torch.tensor([0.5, 1.0, 0.0]) / 0.5  # rms / Σ mean(rms), capped at 1/decay = 5
    moved = torch.tensor([1.0, 2.0, 2.0])
    want = (moved + 0.2 * rate * (torch.tensor([1.0, 2.0, 3.0]) - moved)
            - 0.1 * torch.tensor([1.0, 1.0, 0.0]) / (torch.tensor([0.5, 1.0, 0.0]) + RmsDynamicEval.EPS))
    torch.testing.assert_close(w.detach(), want)

    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    static = lm.next_char_probs(text[200:], text[:200])
    dynamic = lm.next_char_probs(text[200:], text[:200], dynamic_lr=0.01, segment=16, rms=rms, decay=0.01)
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert np.allclose(dynamic[:16], static[:16], atol=1e-6)
    rows, tgt = np.arange(len(text) - 200), lm.encode(text[200:])
    assert -np.log2(dynamic[rows, tgt]).mean() < -np.log2(static[rows, tgt]).mean() - 0.5
    with pytest.raises(ValueError, match="rms"):
        RmsDynamicEval(params, rms[:-1], lr=0.1)


def test_generate_notes_emulated_bf16_on_a_cpu_without_it(tmp_path, monkeypatch):
    """--precision bfloat16 on a CPU without bf16 instructions trains, with a line in the log saying it is emulated
    and slower there; not on a CPU with them, nor for 'auto' or 'float32' (float32 there), nor off the CPU."""
    import torch

    from lstmkit.tasks import devices
    from lstmkit.tasks.generate.job import run

    cpu = torch.device("cpu")
    for native in (False, True):
        monkeypatch.setattr(devices, "native_bf16", lambda native=native: native)
        notes = {p: devices.emulated_bf16_note(p, cpu) for p in devices.PRECISIONS}
        assert (notes["bfloat16"] is not None) == (not native) and notes["auto"] is None and notes["float32"] is None
        assert devices.emulated_bf16_note("bfloat16", torch.device("meta")) is None
    monkeypatch.setattr(devices, "native_bf16", lambda: False)
    lines = []
    run(out=str(tmp_path / "run"), limit=3000, n_chars=5, hidden_size=8, embed_dim=4, epochs=1, batches_per_epoch=1,
        seq_len=16, precision="bfloat16", progress=False, log=lines.append)
    assert any("no bfloat16 instructions" in str(line) and "--precision auto" in str(line) for line in lines)


def test_char_lm_is_silent_by_default(capsys):
    from lstmkit.tasks.generate import CharLM

    text = "abcdefg" * 100
    CharLM(hidden_size=8, embed_dim=4, epochs=1, batches_per_epoch=1, seq_len=16).fit(text, text[:100])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    CharLM(hidden_size=8, embed_dim=4, epochs=1, batches_per_epoch=1, seq_len=16, verbose=1).fit(text, text[:100])
    assert "nats per character" in capsys.readouterr().out


def test_char_lm_trains_in_bf16_on_request_and_evaluates_in_float32(monkeypatch):
    """precision='bfloat16': the training forward's products in bfloat16 (logits float32, near float32's), the
    evaluation bit for bit float32's; 'auto' follows the CPU; a bad value is refused by name."""
    import torch

    from lstmkit.tasks import devices
    from lstmkit.tasks.generate import CharLM
    from lstmkit.tasks.generate.net import CharNet

    with pytest.raises(ValueError, match="precision: expected one of 'float32', 'bfloat16', 'auto', got 'half'"):
        CharLM(precision="half")
    torch.manual_seed(0)
    net = CharNet(20, 16, 32)
    x = torch.randint(0, 20, (3, 12))
    net.train()
    want, _ = net(x)
    net.bf16 = True
    got, _ = net(x)
    assert got.dtype == torch.float32 and 0 < float((got - want).abs().max()) <= 2e-2 * float(want.abs().max())
    net.eval()
    with torch.no_grad():
        evaluated, _ = net(x)
        net.bf16 = False
        torch.testing.assert_close(evaluated, net(x)[0], rtol=0, atol=0)
    text = "abcdefg" * 100
    lm = CharLM(hidden_size=8, embed_dim=4, epochs=1, batches_per_epoch=1, seq_len=16, precision="bfloat16")
    assert lm.fit(text, text[:100]).history_["precision"] == "bfloat16" and lm.model.bf16
    for native in (True, False):
        monkeypatch.setattr(devices, "native_bf16", lambda native=native: native)
        lm = CharLM(hidden_size=8, embed_dim=4, steps=2, eval_every=1, seq_len=16, batch_size=4, precision="auto")
        assert lm.fit(text, text[:300]).history_["precision"] == ("bfloat16" if native else "float32")


def test_generate_precision_flag_reaches_the_results(tmp_path):
    out = str(tmp_path / "run")
    argv = ["generate", "--limit", "6000", "--steps", "2", "--eval-every", "1", "--hidden-size", "16", "--seq-len",
            "16", "--n-chars", "5", "--dynamic-lr", "0", "--precision", "bfloat16", "--out", out, "--no-progress"]
    assert main(argv) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["training_time"]["precision"] == "bfloat16" and res["config"]["precision"] == "bfloat16"


def test_a_tiny_temperature_samples_greedily_not_nan():
    """--temperature 1e-300 rounded to 0 in float32 (0/0 = nan: an internal error): it is the greedy limit."""
    from lstmkit.tasks.generate.model import CharLM

    lm = CharLM(hidden_size=8, embed_dim=8, seq_len=16, epochs=1, batches_per_epoch=2, batch_size=4)
    lm.fit("abcabcabcabcabcabcabcabcabcabcabc" * 4, log=lambda *a, **k: None)
    assert lm.sample("ab", 10, temperature=1e-300) == lm.sample("ab", 10, temperature=1e-30)


def test_char_lm_refuses_what_it_cannot_read_by_name():
    """A list of texts would be read as characters the vocabulary lacks (every id 'unknown'), a model used before
    fit has no vocabulary, and counts below 1 train or sample nothing: each is refused, naming the argument."""
    from lstmkit.tasks.generate import CharLM

    tiny = dict(hidden_size=8, embed_dim=4, seq_len=8, epochs=1, batch_size=4, batches_per_epoch=2)
    with pytest.raises(TypeError, match="text: expected a str .*got list; join a list"):
        CharLM(**tiny).fit(["the quick brown fox"] * 20)
    unfitted = CharLM(**tiny)
    for call, name in [(lambda: unfitted.sample("a", 3), "sample"), (lambda: unfitted.bits_per_char("ab"),
                                                                     "bits_per_char"),
                       (lambda: unfitted.save("never.safetensors"), "save")]:
        with pytest.raises(ValueError, match=f"CharLM.{name}: call fit"):
            call()
    for arg in ("seq_len", "epochs", "batch_size"):
        with pytest.raises(ValueError, match=f"{arg}: expected an int >= 1, got 0"):
            CharLM(**{**tiny, arg: 0})
    lm = CharLM(**tiny).fit("the quick brown fox jumps over the lazy dog. " * 10)
    with pytest.raises(ValueError, match="need at least 2 characters"):
        lm.bits_per_char("a")
    with pytest.raises(ValueError, match="top_k: expected None or an int >= 1, got -1"):
        lm.sample("a", 3, top_k=-1)
    with pytest.raises(ValueError, match="n: expected the number of characters to add"):
        lm.sample("a", -5)
    assert lm.sample("th", 0) == "th"


def test_next_char_probs_has_one_row_per_character_of_text():
    """One row per character of ``text``, whatever context there is: an empty text gives no rows (the uniform row
    stands for text[0] when nothing precedes it, and there is no text[0])."""
    from lstmkit.tasks.generate import CharLM

    lm = CharLM(hidden_size=8, embed_dim=4, seq_len=8, epochs=1, batch_size=4, batches_per_epoch=2)
    lm.fit("the quick brown fox jumps over the lazy dog. " * 10, log=lambda *a: None)
    width = len(lm.config["vocab"]) + 1
    for text, context in [("", ""), ("", "the"), ("t", ""), ("t", "the"), ("the", "")]:
        for lr in (0.0, 0.1):
            assert lm.next_char_probs(text, context, dynamic_lr=lr).shape == (len(text), width), (text, context, lr)


def test_unseen_characters_cost_their_code_and_every_character_is_scored(tmp_path):
    """A held-out text of characters the vocabulary lacks scored ~0.003 bits/char (every one was the shared
    "unknown" id, which dynamic evaluation learns to predict) and beat xz: each now also costs
    unknown_bits (a uniform code over the Unicode characters the model never saw, ~20 bits), in bits_per_char
    and in the run's table. bits_per_char scores every character after each part's first (the last
    len(text) % streams were dropped), which next_char_probs agrees with; warmup=0 reads no context (it read the
    whole context as text); non-finite learning rates are refused."""
    import math

    import numpy as np

    from lstmkit.tasks.generate import CharLM
    from lstmkit.tasks.generate.job import lstm_bpc

    text = "the quick brown fox jumps over the lazy dog. " * 12
    lm = CharLM(hidden_size=8, embed_dim=4, seq_len=8, epochs=1, batch_size=4, batches_per_epoch=2)
    lm.fit(text, log=lambda *a: None)
    assert lm.unknown_bits() == math.log2(0x110000 - 0x800 - len(lm.config["vocab"]))
    unseen = "".join(chr(0x4E00 + k) for k in range(60))
    rows = lstm_bpc(lm, text, text[:50], unseen, dynamic_lr=2.0, min_match=5)
    assert all(r["bpc"] > lm.unknown_bits() for r in rows), rows
    assert lm.bits_per_char(unseen) > lm.unknown_bits()

    probe = text[:101]
    for streams in (1, 3):
        longer = lm.bits_per_char(probe + "xyz", streams=streams)
        assert longer != lm.bits_per_char(probe, streams=streams)  # the tail counts
    want = lm.code_bits(lm.next_char_probs(probe[1:], probe[:1]), lm.encode(probe[1:])).mean()
    assert abs(lm.bits_per_char(probe, streams=1) - want) < 1e-5
    assert lm.next_char_probs("the", "a long context", warmup=0).shape[0] == 3
    np.testing.assert_allclose(lm.next_char_probs("the", "a long context", warmup=0), lm.next_char_probs("the"))
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="dynamic_lr: expected a finite number >= 0"):
            lm.next_char_probs("the", dynamic_lr=bad)
    with pytest.raises(ValueError, match="warmup: expected an int >= 0, got -3"):
        lm.next_char_probs("the", "ctx", warmup=-3)
    with pytest.raises(ValueError, match="streams: expected an int >= 1, got 0"):
        lm.bits_per_char(probe, streams=0)
    short = CharLM(hidden_size=4, embed_dim=4, seq_len=50, epochs=1, batch_size=2, batches_per_epoch=1)
    with pytest.raises(ValueError, match=r"val_text \(the validation split\): 9 characters, too short .*--seq-len"):
        short.fit(text, "short val", log=lambda *a: None)


def test_text_files_keep_their_line_endings(tmp_path):
    """--text and --data files were read with newline translation: "\\r\\n" became "\\n", so a 6,600-character
    file was scored as 6,200. The characters are read as they are."""
    from lstmkit.io.files import read_text

    path = tmp_path / "crlf.txt"
    path.write_bytes(b"one\r\ntwo\rthree\n")
    assert read_text(path, "--text") == "one\r\ntwo\rthree\n"
