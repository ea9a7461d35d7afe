"""The crash-proof harness: random and hostile argument sets for every op, on every twin,
each twin in its own child process.

How it runs::

    one Worker per twin (_child.py)      started once per session; a case goes to all of
                                         them at once, each answers within TIMEOUT s
    corpus (fuzz_corpus/crashes.jsonl)   every case that ever crashed or hung: replayed
                                         first, on every run; a new crash or hang is
                                         appended there (commit it with the fix)
    generated cases (fuzzcases.py)       CASES per op from a seeded generator

A case fails when a twin crashes (the child dies: segfault, abort, SIGFPE), hangs, raises
something other than cnnlab's deliberate errors (ArgumentError, DtypeError, TypeError,
MemoryError), or returns values that differ from the torch twin's (or, where torch
refuses, the NumPy twin's). The size helpers run once per case, against torch's meta
tensors, and must answer in O(1). The last test prints the counts per op and twin.

Environment: CNNLAB_FUZZ_CASES (cases per op, default 400: ~45 s for the whole
harness on 2 idle cores, three twins), CNNLAB_FUZZ_SEED (default 0; "random" draws one and prints it),
CNNLAB_FUZZ_TIMEOUT (seconds per case, default 20), CNNLAB_FUZZ_CORPUS (another corpus
file), CNNLAB_FUZZ_REPORT (write the counts there as JSON), CNNLAB_FUZZ_LOG (append every
outcome other than a value there, with its case, as JSON lines).
"""
from __future__ import annotations

import collections
import json
import os
import random

import numpy as np
import pytest

import cnnlab
import fuzzcases
from _child import Worker

# Run once in CI (step 1, every twin, torch included to compare values), not again on the
# installed wheels; see .ci/run.
pytestmark = pytest.mark.slow

CASES = int(os.environ.get("CNNLAB_FUZZ_CASES", "400"))
_seed = os.environ.get("CNNLAB_FUZZ_SEED", "0")
SEED = random.SystemRandom().randrange(2**32) if _seed == "random" else int(_seed)
TIMEOUT = float(os.environ.get("CNNLAB_FUZZ_TIMEOUT", "20"))
CORPUS = os.environ.get("CNNLAB_FUZZ_CORPUS") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "fuzz_corpus", "crashes.jsonl")
TWINS = cnnlab.backends()
REFERENCE_ORDER = ["torch", "numpy", "cython"]

# (op, twin) -> Counter of: tried, value, refused, torch-refused, crash, hang, unexpected,
# wrong. Filled by the op tests, printed by the report test.
STATS = collections.defaultdict(collections.Counter)
EXAMPLES = collections.defaultdict(list)     # kind -> a few (op, twin, message), for the report


def _key(case) -> str:
    return json.dumps(case, sort_keys=True)


def _load_corpus():
    if not os.path.exists(CORPUS):
        return []
    with open(CORPUS) as f:
        return [json.loads(line) for line in f if line.strip() and not line.startswith("#")]


def _record(case):
    """Append a case that crashed or hung to the corpus, once."""
    known = {_key(c) for c in _load_corpus()}
    if _key(case) not in known:
        os.makedirs(os.path.dirname(CORPUS), exist_ok=True)
        with open(CORPUS, "a") as f:
            f.write(json.dumps(case, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def workers():
    # 3 GB of address space: a case that would need more fails with MemoryError at once
    # (a refusal) instead of computing a multi-gigabyte output until the time limit.
    started = {t: Worker(t, memory_gb=3) for t in TWINS}
    yield started
    for w in started.values():
        w.close()


def _log(case, outcomes):
    path = os.environ.get("CNNLAB_FUZZ_LOG")
    if path:
        with open(path, "a") as f:
            for twin, o in outcomes.items():
                if o.status != "ok":
                    f.write(json.dumps({"twin": twin, "status": o.status, "error": o.error,
                                        "case": case}) + "\n")


def _judge(case, outcomes):
    """Failures (strings) of one case over its twins' outcomes; counts into STATS."""
    _log(case, outcomes)
    op, failures = case["op"], []
    values = {t: o.value for t, o in outcomes.items() if o.status == "ok"}
    reference = next((t for t in REFERENCE_ORDER if t in values), None)
    for twin, o in outcomes.items():
        stats = STATS[op, twin]
        stats["tried"] += 1
        if o.failed:
            stats[o.status] += 1
            failures.append(f"{twin}: {o.status} ({o.error})")
            _record(case)
        elif o.status == "error":
            kind = fuzzcases.classify(o.error)
            if kind == "unexpected" and twin == "torch" and o.error.startswith("RuntimeError"):
                kind = "torch-refused"        # torch's own limits (ATen), not cnnlab's code
            stats[kind] += 1
            if kind == "torch-refused" and len(EXAMPLES[kind]) < 5:
                EXAMPLES[kind].append(f"{op}: {o.error[:200]}")
            if kind == "unbuildable":
                stats["tried"] -= 1
            elif kind == "unexpected":
                failures.append(f"{twin}: unexpected {o.error}")
            elif values and kind == "refused" and not _twin_specific(o.error):
                stats["wrong"] += 1
                failures.append(f"{twin}: refused ({o.error}) where {sorted(values)} computed")
        else:
            stats["value"] += 1
            why = fuzzcases.mismatch(op, o.value, values[reference]) if op in \
                fuzzcases.HELPERS else (None if twin == reference else
                                        fuzzcases.mismatch(op, o.value, values[reference]))
            if why:
                stats["wrong"] += 1
                failures.append(f"{twin} vs {reference}: {why}")
    return failures


def _twin_specific(error: str) -> bool:
    """A refusal that one twin may make where another computes: memory, or a size past
    that twin's own limits (BLAS's C int, the NumPy twin's padded copy)."""
    return error.startswith(("MemoryError", "_ArrayMemoryError")) or "too large" in error


def _run(workers, case):
    twins = TWINS[:1] if case["op"] in fuzzcases.HELPERS else TWINS
    for t in twins:
        workers[t].submit(case)
    return _judge(case, {t: workers[t].result(TIMEOUT) for t in twins})


def _cases(op):
    corpus = [c for c in _load_corpus() if c["op"] == op]
    rng = np.random.default_rng([SEED, fuzzcases.OPS.index(op)])
    return corpus + [fuzzcases.generate(op, rng) for _ in range(CASES)]


@pytest.mark.parametrize("op", fuzzcases.OPS)
def test_fuzz(workers, op):
    failed = []
    for case in _cases(op):
        problems = _run(workers, case)
        if problems:
            failed.append(f"{'; '.join(problems)}\n    case: {json.dumps(case)}")
    assert not failed, (f"{len(failed)} failing cases (seed {SEED}; crashes and hangs were "
                        f"added to {CORPUS}):\n" + "\n".join(failed[:10]))


def test_fuzz_report(capsys):
    """The counts per op and twin (printed; CNNLAB_FUZZ_REPORT also gets them as JSON)."""
    if not STATS:
        pytest.skip("no fuzz test ran in this session")
    columns = ["tried", "value", "refused", "torch-refused", "crash", "hang", "unexpected",
               "wrong", "unbuildable"]
    lines = [f"fuzz: seed {SEED}, {CASES} generated cases per op plus the corpus "
             f"({len(_load_corpus())} cases), timeout {TIMEOUT:g} s",
             f"{'op':32} {'twin':7} " + " ".join(f"{c:>13}" for c in columns)]
    for (op, twin), c in sorted(STATS.items()):
        lines.append(f"{op:32} {twin:7} " + " ".join(f"{c[k]:>13}" for k in columns))
    total = collections.Counter()
    for c in STATS.values():
        total.update(c)
    lines.append(f"{'total':32} {'':7} " + " ".join(f"{total[k]:>13}" for k in columns))
    for kind, examples in EXAMPLES.items():
        lines += [f"{kind}, e.g.:"] + [f"    {e}" for e in examples]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    path = os.environ.get("CNNLAB_FUZZ_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({"seed": SEED, "cases_per_op": CASES,
                       "counts": {f"{op} {twin}": dict(c) for (op, twin), c in STATS.items()}},
                      f, indent=1)
