"""Four Python threads running four models at once give exactly what running them one by one gives."""
import threading

import numpy as np

import lstmkit


def _models():
    return [lstmkit.LSTM(16, 48, num_layers=2, seed=1, dtype="float64"),
            lstmkit.GRU(16, 32, bidirectional=True, seed=2),
            lstmkit.LSTM(16, 40, proj_size=8, seed=3),
            lstmkit.GRU(16, 24, num_layers=3, seed=4, dtype="float64")]


def _work(model, x, lengths):
    """Forward and backward several times, as a serving/training thread would."""
    results = []
    for _ in range(5):
        out, _ = model.train()(x, lengths=lengths)
        g = model.backward(np.ones_like(out))
        results.append((out, g.input, g.params["weight_hh_l0"]))
    stream = model.eval().stream(batch=x.shape[1]) if not model.config.bidirectional else None
    if stream is not None:
        results.append(tuple(stream.step(x[t]) for t in range(x.shape[0])))
    return results


def test_four_threads_four_models_match_sequential_runs():
    rng = np.random.default_rng(0)
    models = _models()
    inputs = [rng.standard_normal((30, 6, 16)).astype(m.dtype) for m in models]
    lengths = [30, 12, 1, 30, 0, 25]
    expected = [_work(m, x, lengths) for m, x in zip(models, inputs)]
    got = [None] * 4

    def run(k):
        got[k] = _work(models[k], inputs[k], lengths)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for k in range(4):
        for a, b in zip(expected[k], got[k]):
            for u, v in zip(a, b):
                np.testing.assert_array_equal(u, v, err_msg=f"model {k}")
