"""Character language model: ``CharLM`` (scikit-learn style) on lstmkit.torch.LSTM/GRU.

    lm = CharLM(hidden_size=256).fit(train_text, val_text)
    lm.bits_per_char(test_text)                       # float
    lm.sample("def ", n=200, temperature=0.8, top_k=20)  # str

Training either reads random chunks of ``seq_len + 1`` characters, each from a zero state, for ``epochs``
epochs with early stopping (the default), or, given ``steps`` and/or ``time_budget``, reads the text as
``batch_size`` streams with the state carried across chunks (truncated BPTT, ``stream.py``) until the steps or
the seconds run out, keeping the best validated weights. Evaluation and sampling carry the state across the
whole text.
"""
from __future__ import annotations

import math

import numpy as np

from .. import checkpoint, devices
from ..training import TrainConfig, fit, keeps_global_rng, quiet, seed_everything

TASK = "generate"
DYNAMIC_SEGMENT = 64  # characters dynamic evaluation scores between two updates (next_char_probs' default)
# Unicode's scalar values (code points less the surrogates): what a character outside the vocabulary may be
UNICODE_CHARACTERS = 0x110000 - 0x800


class RmsDynamicEval:
    """Dynamic evaluation's RMS-normalised step with decay (Krause et al. 2018, arXiv:1709.07432, eq. 7-8), as an
    optimiser over ``params``: θ ← θ − lr·∇θ / (rms + ε) + decay·rate·(θ₀ − θ), θ₀ the weights at the start, rms
    the gradients' root mean square over training text (``CharLM.gradient_rms``), rate = rms / Σ mean(rms) over
    the parameters (capped at 1/decay, so a weight is pulled back no further than θ₀)."""

    EPS = 1e-5  # the paper's ε: keeps weights whose training gradient was ~0 from taking huge steps

    def __init__(self, params: list, rms: list, lr: float, decay: float = 0.0):
        if len(rms) != len(params) or any(r.shape != p.shape for r, p in zip(rms, params)):
            raise ValueError("rms: expected one tensor per parameter, of its shape (CharLM.gradient_rms)")
        self.params, self.lr, self.decay = params, lr, decay
        self.scale = [1.0 / (r + self.EPS) for r in rms]
        total = sum(float(r.mean()) for r in rms) or 1.0
        self.rate = [(r / total).clamp_(max=1.0 / decay) if decay else None for r in rms]
        self.start = [p.detach().clone() for p in params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        with torch.no_grad():
            for p, scale, rate, p0 in zip(self.params, self.scale, self.rate, self.start):
                if rate is not None:  # the decay first: it reads θ before this step, the gradient term does not
                    p.add_(self.decay * rate * (p0 - p))
                if p.grad is not None:
                    p.sub_(self.lr * p.grad * scale)


class CharLM:
    """Next-character LSTM. Characters seen in training get ids 1..V-1; id 0 stands for any other.

    verbose: 0 silent (default), 1 one line per epoch on stdout, 2 also a progress bar (on a terminal).
    device: where the model trains, scores and samples ('cpu', 'cuda', 'cuda:N', 'mps' or a torch.device;
    checked here, so a missing GPU fails before any work).
    Network options (net.py): embed_dropout, proj_size (LSTM projection), layer_norm (lstmkit's layer-normalised
    cell), tie_weights (the output layer shares the embedding; embed_dim must equal proj_size or hidden_size),
    zoneout (cell, hidden) and recurrent_dropout (lstmkit's variant cell: regularise the recurrence itself).
    Stream training (stream.py), on when ``steps`` or ``time_budget`` (seconds, evaluations included) is set:
    AdamW with ``weight_decay``, ``warmup`` steps then cosine decay, validation every ``eval_every`` steps.
    precision: 'float32' (default), 'bfloat16' (training's products in bfloat16 on the CPU: the recurrent layer's,
    where its cell has them, docs/mixed_precision.md, and the output layer's; float32 state, loss, weights and
    evaluation), or 'auto' (bfloat16 where the CPU multiplies it natively: AVX512_BF16 or AMX). The precision
    used is ``history_['precision']``.
    """

    def __init__(self, hidden_size: int = 256, embed_dim: int = 64, num_layers: int = 1, cell: str = "lstm",
                 seq_len: int = 64, epochs: int = 10, batch_size: int = 64, batches_per_epoch: int | None = 50,
                 lr: float = 4e-3, lr_schedule: str = "constant", dropout: float = 0.0, patience: int = 3,
                 seed: int = 0, verbose: int = 0, device="cpu", *, embed_dropout: float = 0.0, proj_size: int = 0,
                 layer_norm: bool = False, tie_weights: bool = False, steps: int | None = None,
                 time_budget: float | None = None, warmup: int = 50, weight_decay: float = 0.01,
                 eval_every: int = 100, precision: str = "float32", zoneout=(0.0, 0.0),
                 recurrent_dropout: float = 0.0):
        for name, value in (("hidden_size", hidden_size), ("embed_dim", embed_dim), ("num_layers", num_layers),
                            ("seq_len", seq_len), ("epochs", epochs), ("batch_size", batch_size)):
            _require_int(name, value)
        if precision not in devices.PRECISIONS:
            raise ValueError(f"precision: expected one of {', '.join(map(repr, devices.PRECISIONS))}, "
                             f"got {precision!r}")
        self.config = dict(hidden_size=hidden_size, embed_dim=embed_dim, num_layers=num_layers, cell=cell,
                           seq_len=seq_len, epochs=epochs, batch_size=batch_size, batches_per_epoch=batches_per_epoch,
                           lr=lr, lr_schedule=lr_schedule, dropout=dropout, patience=patience, seed=seed,
                           embed_dropout=embed_dropout, proj_size=proj_size, layer_norm=layer_norm,
                           tie_weights=tie_weights, steps=steps, time_budget=time_budget, warmup=warmup,
                           weight_decay=weight_decay, eval_every=eval_every, precision=precision,
                           zoneout=zoneout, recurrent_dropout=recurrent_dropout)
        if self._streaming():
            self._stream_config().check()  # a bad steps / time_budget fails here, before any work
        self.verbose = verbose
        self.device = devices.resolve(device)
        self.model = None
        self.history_ = None

    def encode(self, text: str) -> np.ndarray:
        """str -> (n,) int64 ids."""
        self._require_fitted("encode")
        _require_text("text", text)
        lookup = {c: i + 1 for i, c in enumerate(self.config["vocab"])}
        return np.fromiter((lookup.get(c, 0) for c in text), np.int64, len(text))

    def unknown_bits(self) -> float:
        """The extra bits a character outside the vocabulary costs: the model predicts only "unknown" (id 0), and
        which character it is takes a uniform code over the Unicode characters the vocabulary lacks (~20.1 bits).
        Without it an unseen character would cost only the unknown id's share, and a held-out text of unseen
        characters would score close to 0 bits/char (a compressor pays their every byte)."""
        self._require_fitted("unknown_bits")
        return math.log2(UNICODE_CHARACTERS - len(self.config["vocab"]))

    def code_bits(self, probs: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """(n,) bits to code each character ``ids`` (n,) under its predicted distribution ``probs`` (n, V), or
        given the probability each got (n,) (a mixture's): −log2 of its probability, plus ``unknown_bits`` where
        the character is outside the vocabulary (id 0)."""
        p = probs[np.arange(len(ids)), ids] if probs.ndim == 2 else probs
        return -np.log2(np.maximum(p, 1e-300)) + np.where(ids == 0, self.unknown_bits(), 0.0)

    def _require_fitted(self, what: str) -> None:
        if self.model is None or "vocab" not in self.config:
            raise ValueError(f"CharLM.{what}: call fit(text) or CharLM.load(path) first")

    def _build(self):
        from .net import CharNet

        c = self.config
        seed_everything(c["seed"])
        # checkpoints written before an option existed lack its key: the default is what they trained with
        net = CharNet(len(c["vocab"]) + 1, c["embed_dim"], c["hidden_size"], c["num_layers"], c["cell"],
                      c.get("dropout", 0.0), embed_dropout=c.get("embed_dropout", 0.0),
                      proj_size=c.get("proj_size", 0), layer_norm=c.get("layer_norm", False),
                      tie_weights=c.get("tie_weights", False), zoneout=c.get("zoneout", (0.0, 0.0)),
                      recurrent_dropout=c.get("recurrent_dropout", 0.0))
        net.bf16 = self._precision_used() == "bfloat16"
        return net.to(self.device)

    def _precision_used(self) -> str:
        """precision resolved: 'bfloat16' only on the CPU ('auto': where the CPU multiplies it natively)."""
        # (checkpoints from before the option: float32)
        return devices.precision_used(self.config.get("precision", "float32"), self.device)

    def _streaming(self) -> bool:
        return self.config.get("steps") is not None or self.config.get("time_budget") is not None

    def _stream_config(self):
        from .stream import StreamConfig

        c = self.config
        return StreamConfig(batch_size=c["batch_size"], seq_len=c["seq_len"], lr=c["lr"],
                            weight_decay=c["weight_decay"], warmup=c["warmup"], steps=c["steps"],
                            time_budget=c["time_budget"], eval_every=c["eval_every"], seed=c["seed"])

    def _chunks(self, ids: np.ndarray, name: str = "text"):
        import torch

        n = self.config["seq_len"] + 1
        k = len(ids) // n
        if k == 0:
            raise ValueError(f"{name}: {len(ids)} characters, too short for one chunk of seq_len + 1 = {n}; give "
                             "more text or a smaller seq_len (--seq-len)")
        return (torch.from_numpy(ids[:k * n].reshape(k, n)),)

    @keeps_global_rng
    def fit(self, text: str, val_text: str | None = None, *, ckpt_dir: str | None = None, resume: bool = False,
            log=None) -> "CharLM":
        """Train on ``text``; ``val_text`` (optional) drives early stopping. ``log``: where the epoch lines go
        (default: stdout when ``verbose``, else nowhere)."""
        import torch

        _require_text("text", text)
        if val_text is not None:
            _require_text("val_text", val_text)
        c = self.config
        c["vocab"] = "".join(sorted(set(text)))
        self.model = self._build()
        if log is None:
            log = print if self.verbose else quiet
        if self._streaming():
            return self._fit_stream(text, val_text, ckpt_dir, resume, log)

        def loss_fn(model, chunk):
            logits, _ = model(chunk[:, :-1])
            return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1))

        cfg = TrainConfig(epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"], patience=c["patience"],
                          seed=c["seed"], batches_per_epoch=c["batches_per_epoch"], progress=int(self.verbose) >= 2,
                          lr_schedule=c["lr_schedule"], loss_unit="nats per character (cross-entropy)")
        val = self._chunks(self.encode(val_text), "val_text (the validation split)") if val_text else None
        self.history_ = fit(self.model, loss_fn, self._chunks(self.encode(text)), val, cfg, task=TASK, config=c,
                            ckpt_dir=ckpt_dir, resume=resume, log=log)
        self.history_["precision"] = self._precision_used()
        return self

    def _fit_stream(self, text, val_text, ckpt_dir, resume, log) -> "CharLM":
        from .stream import train_stream

        if resume:
            raise ValueError("resume: not available with steps / time_budget training (it restarts its schedule)")
        val_bpc = (lambda model: self.bits_per_char(val_text, streams=8)) if val_text else None
        self.history_ = train_stream(self.model, self.encode(text), val_bpc, self._stream_config(),
                                     ckpt_dir=ckpt_dir, task=TASK, config=self.config, log=log, device=self.device)
        self.history_["precision"] = self._precision_used()
        return self

    def bits_per_char(self, text: str, streams: int = 32, chunk: int = 256) -> float:
        """Bits per character of ``text`` under the model: the text is cut into ``streams`` contiguous parts
        (lengths within one of each other) read in parallel, state carried from chunk to chunk. Each part's first
        character is read, not scored; every other character is, a character outside the vocabulary with
        ``unknown_bits`` added (``code_bits``)."""
        import torch

        self._require_fitted("bits_per_char")
        for name, value in (("streams", streams), ("chunk", chunk)):
            _require_int(name, value)
        ids = self.encode(text)
        if len(ids) < 2:
            raise ValueError(f"text: bits per character need at least 2 characters (one read, one predicted), "
                             f"got {len(ids)}")
        parts = np.array_split(ids, min(streams, len(ids) // 2))  # every character in some part
        width = len(parts[0])
        x = np.zeros((len(parts), width), np.int64)
        target = np.full((len(parts), width), -100, np.int64)  # -100: cross_entropy's ignore_index (padding)
        for k, part in enumerate(parts):
            x[k, :len(part)] = part
            target[k, :len(part) - 1] = part[1:]
        x, target = torch.from_numpy(x).to(self.device), torch.from_numpy(target).to(self.device)
        total, state = 0.0, None
        self.model.eval()
        with torch.no_grad():
            for i in range(0, width - 1, chunk):
                tgt = target[:, i:i + chunk][:, :width - 1 - i]
                logits, state = self.model(x[:, i:i + tgt.shape[1]], state)
                total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                                 tgt.reshape(-1), reduction="sum"))
        scored = sum(len(part) - 1 for part in parts)
        unknown = sum(int((part[1:] == 0).sum()) for part in parts)
        return (total / math.log(2) + unknown * self.unknown_bits()) / scored

    def next_char_probs(self, text: str, context: str = "", *, dynamic_lr: float = 0.0, segment: int = DYNAMIC_SEGMENT,
                        warmup: int = 512, rms: list | None = None, decay: float = 0.0) -> np.ndarray:
        """(len(text), V) probability of every next character, column ``j`` for id ``j`` (0: unknown), reading
        ``text`` as one stream after a warm-up on the last ``warmup`` characters of ``context``.

        ``dynamic_lr`` > 0 turns on dynamic evaluation (Krause et al. 2018, arXiv:1709.07432): after each
        ``segment`` characters are scored, one step with that learning rate on their loss adapts a copy of
        the model to the text read so far; a character is always scored before the model learns from it, and
        ``self.model`` is left unchanged. The step is SGD's, or with ``rms`` (``gradient_rms``'s list, one
        tensor per parameter) the paper's RMS-normalised rule, whose ``decay`` pulls each weight back towards
        its trained value (``RmsDynamicEval``)."""
        import copy

        import torch

        self._require_fitted("next_char_probs")
        _require_text("text", text)
        _require_text("context", context)
        for name, value in (("dynamic_lr", dynamic_lr), ("decay", decay)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        _require_int("segment", segment)
        _require_int("warmup", warmup, least=0)
        model = copy.deepcopy(self.model) if dynamic_lr else self.model
        model.eval()  # no dropout, also while adapting
        opt = None
        if dynamic_lr:
            params = list(model.parameters())
            opt = (RmsDynamicEval(params, rms, dynamic_lr, decay) if rms is not None
                   else torch.optim.SGD(params, lr=dynamic_lr))
        start = min(len(context), warmup)  # position in ids of text[0]
        ids = torch.from_numpy(self.encode(context[len(context) - start:] + text))[None].to(self.device)
        state, out = None, []
        with torch.no_grad():
            if start > 1:
                _, state = model(ids[:, :start - 1])
        for i in range(max(start - 1, 0), ids.shape[1] - 1, segment):
            inp, tgt = ids[:, i:min(i + segment, ids.shape[1] - 1)], ids[:, i + 1:i + segment + 1]
            with torch.set_grad_enabled(bool(dynamic_lr)):
                logits, new_state = model(inp, state)
                logp = torch.log_softmax(logits[0], -1)
                if dynamic_lr:
                    opt.zero_grad(set_to_none=True)
                    torch.nn.functional.nll_loss(logp, tgt[0]).backward()
                    opt.step()
            out.append(logp.detach().exp().cpu().numpy())
            state = tuple(s.detach() for s in new_state) if isinstance(new_state, tuple) else new_state.detach()
        probs = np.concatenate(out) if out else np.zeros((0, len(self.config["vocab"]) + 1), np.float32)
        if start == 0 and text:  # text[0] has no context at all: predict it uniformly over the vocabulary
            probs = np.concatenate([np.full((1, probs.shape[1]), 1.0 / probs.shape[1], np.float32), probs])
        return probs

    def gradient_rms(self, text: str, segment: int = DYNAMIC_SEGMENT) -> list:
        """Per parameter (in ``model.parameters()`` order) the root mean square of each weight's loss gradient over
        the ``segment``-character pieces of ``text``, read as one stream (the state carried, in eval mode):
        the normaliser of RMS dynamic evaluation (``next_char_probs(rms=...)``), from training text."""
        import torch

        model, ids = self.model, torch.from_numpy(self.encode(text))[None].to(self.device)
        model.eval()
        params = list(model.parameters())
        sums, state, n = [torch.zeros_like(p) for p in params], None, 0
        for i in range(0, ids.shape[1] - 1, segment):
            inp, tgt = ids[:, i:min(i + segment, ids.shape[1] - 1)], ids[:, i + 1:i + segment + 1]
            model.zero_grad(set_to_none=True)
            logits, state = model(inp, state)
            torch.nn.functional.cross_entropy(logits[0], tgt[0]).backward()
            for total, p in zip(sums, params):
                if p.grad is not None:
                    total.add_(p.grad.square())
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            n += 1
        model.zero_grad(set_to_none=True)
        return [(total / max(n, 1)).sqrt_() for total in sums]

    def sample(self, prompt: str = "", n: int = 300, temperature: float = 0.8, top_k: int | None = None,
               seed: int = 0) -> str:
        """Continue ``prompt`` by ``n`` characters, sampling at ``temperature`` from the ``top_k`` most likely."""
        import torch

        if not 0 < temperature < math.inf:
            raise ValueError(f"temperature: expected a finite number > 0, got {temperature!r}")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n: expected the number of characters to add, an int >= 0, got {n!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
            raise ValueError(f"top_k: expected None or an int >= 1, got {top_k!r}")
        self._require_fitted("sample")
        gen = torch.Generator().manual_seed(seed)
        vocab = self.config["vocab"]
        ids = self.encode(prompt) if prompt else np.array([1 + vocab.find("\n") if "\n" in vocab else 1])
        self.model.eval()
        out = []
        with torch.no_grad():
            logits, state = self.model(torch.from_numpy(ids)[None].to(self.device), None)
            for _ in range(n):
                z = logits[0, -1].clone()
                z[0] = -math.inf  # never emit the unknown-character id
                # <= 0 before the division, and the divisor kept a normal float32 (1e-300 would round to 0: 0/0):
                # a tiny temperature then gives 0 for the likeliest character and -inf for the rest (greedy), not nan
                z = (z - z.max()) / max(temperature, 1e-30)
                if top_k:
                    kth = torch.topk(z, min(top_k, z.numel())).values[-1]
                    z = torch.where(z < kth, torch.full_like(z, -math.inf), z)
                nxt = int(torch.multinomial(torch.softmax(z, -1).cpu(), 1, generator=gen))  # gen: a CPU one
                out.append(vocab[nxt - 1])
                logits, state = self.model(torch.tensor([[nxt]], device=self.device), state)
        return prompt + "".join(out)

    def save(self, path: str) -> None:
        self._require_fitted("save")
        checkpoint.save(path, task=TASK, config=self.config, model=self.model)

    @classmethod
    @keeps_global_rng
    def load(cls, path: str, device="cpu") -> "CharLM":
        """A trained CharLM from ``save``'s file (or a ``lstmkit generate`` run's model.safetensors), its model on
        ``device``."""
        ck = checkpoint.load(path, task=TASK)
        lm = cls(device=device)
        lm.config = ck["config"]
        lm.model = lm._build()
        lm.model.load_state_dict(ck["model"])
        lm.model.eval()
        return lm


def _require_int(name: str, value, least: int = 1) -> None:
    """ValueError naming ``name`` unless ``value`` is an int (not a bool) >= ``least``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name}: expected an int >= {least}, got {value!r}")


def _require_text(name: str, value) -> None:
    """TypeError unless ``value`` is one str: a list of strings would be read as characters the vocabulary lacks."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a str (the text itself), got {type(value).__name__}"
                        + ("; join a list of texts into one str first" if isinstance(value, (list, tuple)) else ""))
