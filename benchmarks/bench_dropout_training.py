"""Training with inter-layer dropout: lstmkit.torch.LSTM against torch.nn.LSTM in pytorch/examples'
word_language_model shape (issue 18).

    PYTHONPATH=src python benchmarks/bench_dropout_training.py [--rounds 7] [--batches 5]

Model (the example's RNNModel with LSTM): embedding 10,000 × 200 → dropout 0.2 → 2-layer LSTM 200 with
inter-layer dropout 0.2 → dropout 0.2 → Linear 200 → 10,000; bptt 35, batch 20, cross-entropy, gradient
norm clipped to 0.25, plain SGD (lr 20), the hidden state carried between batches and detached. The only
difference between the two peers is the recurrent layer: torch.nn.LSTM, or lstmkit.torch.LSTM with the same
weights (lstmkit's training with dropout is one native call forward and one backward, the masks an input).
2 threads each (torch.set_num_threads(2), lstmkit.engine.set_num_threads(2)), float32.

lstmkit runs twice: as a torch program gets it (``import lstmkit.torch`` runs the engine's parallel work on
torch's OpenMP threads, ``engine.share_openmp_team``), and on lstmkit's own thread pool beside torch's
("own threads": switched per call, which restarts one pool thread, ~0.1 ms against batches of tens of ms),
to show what sharing torch's threads is worth.

Also timed: the recurrent layer alone (forward + backward of a (35, 20, 200) input in training mode), where
the peers differ, without the shared embedding, decoder and optimiser.

Each round runs the peers in rotating order: a 0.2 s pause (pool threads park), one untimed batch, then
``--batches`` timed batches; per-batch time = their mean. Reports the median over rounds per peer and the
ratio torch.nn / lstmkit per round (median, min, max: the machine is shared, so the spread matters; above 1
lstmkit is faster), and the process's minor page faults per batch while each peer ran: the batch's
28 MB logits and their gradients come from glibc's heap, which the allocator trims (returns to the kernel)
and regrows whenever a free leaves more than its trim threshold at the top, so a run where that happens
pays ~20 k fresh zeroed pages per batch (~10-30 ms here) whichever RNN it uses; the column says when a
peer's time includes that. Measures only; asserts nothing.

How often the trim happens is not the RNN's doing but the heap's layout, which differs from process to process
(scratch runs of one peer alone, same code: 1.1 k to 12 k faults per batch, batches 117 to 176 ms). ``--heap
steady`` sets glibc's thresholds before the first batch (``mallopt``: trim above 1 GB, mmap from 32 MB, 64 MB
of top pad; the same for both peers), so neither peer's time includes a heap regrown from the kernel: the RNNs'
difference in the whole program, as a process with a tuned allocator (or jemalloc/tcmalloc) sees it.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import resource
import statistics
import time

import torch
from torch import nn

import lstmkit.torch as lt
from lstmkit import engine

VOCAB, EMB, HIDDEN, LAYERS, DROPOUT, BPTT, BATCH = 10_000, 200, 200, 2, 0.2, 35, 20
THREADS = 2
GAP_S = 0.2


class WordLM(nn.Module):
    """pytorch/examples word_language_model's RNNModel (LSTM), its recurrent layer given."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.drop = nn.Dropout(DROPOUT)
        self.encoder = nn.Embedding(VOCAB, EMB)
        self.rnn = rnn
        self.decoder = nn.Linear(HIDDEN, VOCAB)

    def forward(self, tokens, hidden):
        emb = self.drop(self.encoder(tokens))  # (T, B, EMB)
        output, hidden = self.rnn(emb, hidden)
        return self.decoder(self.drop(output)).view(-1, VOCAB), hidden


def make_peers(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    reference = nn.LSTM(EMB, HIDDEN, LAYERS, dropout=DROPOUT)
    ours = lt.LSTM(EMB, HIDDEN, LAYERS, dropout=DROPOUT)
    ours.load_state_dict(reference.state_dict())
    models = {"torch.nn.LSTM": WordLM(reference), "lstmkit.torch.LSTM": WordLM(ours)}
    shared = models["torch.nn.LSTM"].state_dict()
    models["lstmkit.torch.LSTM"].load_state_dict(shared)  # same embedding and decoder too
    peers = {name: Trainer(model) for name, model in models.items()}
    peers["lstmkit.torch.LSTM, own threads"] = OwnThreads(peers["lstmkit.torch.LSTM"])
    return peers


class OwnThreads:
    """A peer run on lstmkit's own thread pool instead of torch's OpenMP threads."""

    def __init__(self, peer):
        self.peer = peer

    def __call__(self):
        engine.share_openmp_team(False)
        try:
            return self.peer()
        finally:
            engine.share_openmp_team(True)


class Trainer:
    """One training batch per call, as the example's train(): hidden carried over and detached."""

    def __init__(self, model: WordLM):
        self.model = model.train()
        self.criterion = nn.CrossEntropyLoss()
        g = torch.Generator().manual_seed(1)
        self.data = torch.randint(0, VOCAB, (BPTT + 1, BATCH), generator=g)
        self.hidden = tuple(torch.zeros(LAYERS, BATCH, HIDDEN) for _ in range(2))

    def __call__(self) -> float:
        tokens, targets = self.data[:-1], self.data[1:].reshape(-1)
        self.hidden = tuple(h.detach() for h in self.hidden)
        self.model.zero_grad()
        output, self.hidden = self.model(tokens, self.hidden)
        loss = self.criterion(output, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 0.25)
        with torch.no_grad():
            for p in self.model.parameters():
                p.add_(p.grad, alpha=-20.0)
        return loss.item()


class LayerOnly:
    """The recurrent layer alone in training mode: forward and backward of (T, B, EMB) with dropout between
    its layers (what differs between the peers, without the shared embedding, decoder and optimiser)."""

    def __init__(self, rnn: nn.Module):
        self.rnn = rnn.train()
        g = torch.Generator().manual_seed(2)
        self.x = torch.randn(BPTT, BATCH, EMB, generator=g, requires_grad=True)
        self.grad = torch.randn(BPTT, BATCH, HIDDEN, generator=g)

    def __call__(self) -> None:
        out, _ = self.rnn(self.x)
        out.backward(self.grad)


def make_layer_peers(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    reference = nn.LSTM(EMB, HIDDEN, LAYERS, dropout=DROPOUT)
    ours = lt.LSTM(EMB, HIDDEN, LAYERS, dropout=DROPOUT)
    ours.load_state_dict(reference.state_dict())
    peers = {"torch.nn.LSTM": LayerOnly(reference), "lstmkit.torch.LSTM": LayerOnly(ours)}
    peers["lstmkit.torch.LSTM, own threads"] = OwnThreads(peers["lstmkit.torch.LSTM"])
    return peers


def run(peers: dict, rounds: int, batches: int) -> tuple[dict, dict]:
    """({peer: seconds per batch, one value per round}, {peer: minor page faults per batch, per round})."""
    for fn in peers.values():  # first calls: allocation, workspace pools, oneDNN primitives
        fn()
        fn()
    names = list(peers)
    per_round = {n: [] for n in names}
    faults = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            time.sleep(GAP_S)
            peers[n]()
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            for _ in range(batches):
                peers[n]()
            per_round[n].append((time.perf_counter() - t0) / batches)
            faults[n].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / batches)
    return per_round, faults


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--heap", choices=("default", "steady"), default="default",
                        help="steady: glibc never trims the heap (see the module's docstring)")
    args = parser.parse_args()
    if args.heap == "steady":
        steady_heap()
    torch.set_num_threads(THREADS)
    engine.set_num_threads(THREADS)
    print(f"word_language_model shape: vocab {VOCAB}, emb {EMB}, {LAYERS}-layer LSTM {HIDDEN}, dropout {DROPOUT}, "
          f"bptt {BPTT}, batch {BATCH}; {THREADS} threads each; engine ISA {engine.isa()}; heap {args.heap}")
    for title, peers in (("whole training batch", make_peers()), ("recurrent layer alone", make_layer_peers())):
        per_round, faults = run(peers, args.rounds, args.batches)
        report(title, per_round, faults)
    report_mask_draws()


def steady_heap() -> None:
    """glibc's heap kept once grown: no trim below 1 GB free at the top, chunks below 32 MB (the most glibc
    allows) from the heap, 64 MB more asked of the kernel at each growth."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # malloc.h
    for option, value in ((m_trim_threshold, 1 << 30), (m_top_pad, 64 << 20), (m_mmap_threshold, 32 << 20)):
        if libc.mallopt(option, value) != 1:
            raise SystemExit(f"--heap steady: mallopt({option}, {value}) failed (not glibc?)")


def report_mask_draws(repeats: int = 200) -> None:
    """One inter-layer mask of this shape drawn as torch.nn's dropout draws it (bernoulli_ with a float p) and
    as lstmkit.torch draws it (float64 uniform < keep): on the CPU the same values from torch's RNG."""
    shape, keep = (BPTT, BATCH, HIDDEN), 1.0 - DROPOUT
    draws = {"bernoulli_(keep)": lambda: torch.empty(shape).bernoulli_(keep).div_(keep),
             "rand(float64).lt_(keep) (lstmkit.torch)":
                 lambda: torch.rand(shape, dtype=torch.float64).lt_(keep).to(torch.float32).div_(keep)}
    print(f"\none inter-layer mask {shape}, median of {repeats} draws")
    for name, draw in draws.items():
        for _ in range(10):
            draw()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            draw()
            times.append(time.perf_counter() - t0)
        print(f"| {name} | {1e3 * statistics.median(times):.3f} ms |")


def report(title: str, per_round: dict, faults: dict) -> None:
    print(f"\n{title}\n| peer | ms per batch (median of rounds) | min | max "
          "| torch.nn / peer per round: median (min, max) | page faults per batch (median) |")
    print("|---|---|---|---|---|---|")
    for name, times in per_round.items():
        ms = [1e3 * t for t in times]
        ratios = [a / b for a, b in zip(per_round["torch.nn.LSTM"], times)]
        print(f"| {name} | {statistics.median(ms):.1f} | {min(ms):.1f} | {max(ms):.1f} | "
              f"{statistics.median(ratios):.2f} ({min(ratios):.2f}, {max(ratios):.2f}) | "
              f"{statistics.median(faults[name]):.0f} |")
    print("target: torch.nn / lstmkit.torch.LSTM >= 1.0")


if __name__ == "__main__":
    main()
