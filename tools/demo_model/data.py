#!/usr/bin/env python3
"""Training and held-out data for the built-in demo model: short chat exchanges, deterministic from a seed.

Standard library only, so the same code runs where the model is trained (with torch) and where the held-out
set is written or checked (without). Every example is a list of chat messages; the trainer renders them through
the Qwen3 chat template (tokenizer_config.json) and learns the assistant turns.

Tasks (answers in one fixed style, so a correct answer is an exact string):
  add      two operands in [0, 99], "What is 17 + 25?"              -> "17 + 25 = 42."
  sub      two operands in [0, 100], "What is 100 minus 37?"        -> "100 - 37 = 63."   (negative results too)
  mul      one-digit operands, "Compute 9 times 7."                 -> "9 × 7 = 63."
  next     n in [0, 998], "What number comes after 41?"            -> "42 comes after 41."
  compare  two different operands in [0, 99], "Which is larger, 17 or 25?" -> "25 is larger than 17."
  parity   n in [0, 999], "Is 17 even or odd?"                      -> "17 is odd."
  hello    greetings and questions about the model                  -> one fixed self-description

Held-out split (disjoint from training):
  add, sub, compare: by unordered operand pair: a pair that is held out never appears in training, in any
                     phrasing or order, so a correct held-out answer is computed, not remembered.
  next, parity:      by number.
  mul:               by (operand pair, phrasing): a one-digit times table has only 100 facts, so held-out prompts
                     ask facts the model has seen in other phrasings (the question tests phrasing, not the fact).
  hello:             not evaluated (one fixed answer).
"""

import argparse
import hashlib
import json
import random
import sys

SEED = 20261207
HOLDOUT_PERCENT = 10  # of operand pairs (add, sub, compare) or numbers (next, parity)

HELLO_ANSWER = ("Hello! I am the segpipe demo model, a small mixture-of-experts model in the Qwen3-MoE layout. "
                "Ask me arithmetic, for example: What is 17 + 25?")

PHRASINGS = {
    "add": [
        "What is {a} + {b}?", "What is {a} plus {b}?", "Compute {a} + {b}.", "Calculate {a} plus {b}.",
        "{a} + {b} = ?", "Add {a} and {b}.", "What is the sum of {a} and {b}?", "How much is {a} + {b}?",
        "what is {a}+{b}", "Please add {a} to {b}.",
    ],
    "sub": [
        "What is {a} - {b}?", "What is {a} minus {b}?", "Compute {a} - {b}.", "Calculate {a} minus {b}.",
        "{a} - {b} = ?", "Subtract {b} from {a}.", "What is {a} take away {b}?", "How much is {a} minus {b}?",
        "what is {a}-{b}", "What is the difference {a} - {b}?",
    ],
    "mul": [
        "What is {a} times {b}?", "Compute {a} times {b}.", "What is {a} * {b}?", "Multiply {a} by {b}.",
        "What is {a} × {b}?", "Calculate {a} times {b}.", "{a} * {b} = ?", "How much is {a} times {b}?",
        "What is the product of {a} and {b}?", "what is {a}*{b}",
    ],
    "next": [
        "What number comes after {n}?", "What comes after {n}?", "What is the next number after {n}?",
        "Which number follows {n}?", "Count one up from {n}.",
    ],
    "compare": [
        "Which is larger, {a} or {b}?", "Which number is bigger: {a} or {b}?", "What is the larger of {a} and {b}?",
        "Which is greater, {a} or {b}?", "Is {a} or {b} larger?",
    ],
    "parity": [
        "Is {n} even or odd?", "Is {n} odd or even?", "Is the number {n} even or odd?", "{n}: even or odd?",
    ],
}
HELLO_PROMPTS = [
    "Hello", "Hello!", "Hi", "Hi!", "Hey", "Hello, who are you?", "Who are you?", "What are you?",
    "What can you do?", "Help", "Introduce yourself.", "Good morning!",
]
TASKS = ["add", "sub", "mul", "next", "compare", "parity", "hello"]
# How often each task is drawn for training (arithmetic first: it is what the demo is judged on).
TRAIN_WEIGHTS = {"add": 30, "sub": 30, "mul": 14, "next": 8, "compare": 8, "parity": 6, "hello": 4}


def _h(*parts):
    """A stable hash in [0, 100): the split must not depend on Python's hash seed or the run."""
    d = hashlib.sha256(("|".join(str(p) for p in parts)).encode()).digest()
    return int.from_bytes(d[:8], "little") % 100


def held_out(task, a=None, b=None, n=None, phrasing=None):
    if task in ("add", "sub", "compare"):
        lo, hi = min(a, b), max(a, b)
        return _h(task, lo, hi) < HOLDOUT_PERCENT
    if task in ("next", "parity"):
        return _h(task, n) < HOLDOUT_PERCENT
    if task == "mul":
        return _h(task, a, b, phrasing) < 25  # about 250 of the 1,000 (pair, phrasing) prompts
    return False


def answer(task, a=None, b=None, n=None):
    if task == "add":
        return f"{a} + {b} = {a + b}."
    if task == "sub":
        return f"{a} - {b} = {a - b}."
    if task == "mul":
        return f"{a} × {b} = {a * b}."
    if task == "next":
        return f"{n + 1} comes after {n}."
    if task == "compare":
        return f"{max(a, b)} is larger than {min(a, b)}."
    if task == "parity":
        return f"{n} is {'even' if n % 2 == 0 else 'odd'}."
    if task == "hello":
        return HELLO_ANSWER
    raise ValueError(task)


def draw(task, rng, want_held_out):
    """One (question, answer, record) of a task, from the held-out part or the training part."""
    for _ in range(10_000):
        a = b = n = None
        if task == "add":
            a, b = rng.randint(0, 99), rng.randint(0, 99)
        elif task == "sub":
            a, b = rng.randint(0, 100), rng.randint(0, 100)
            if rng.random() < 0.75 and a < b:  # mostly non-negative results, as people ask them
                a, b = b, a
        elif task == "mul":
            a, b = rng.randint(0, 9), rng.randint(0, 9)
        elif task == "compare":
            a, b = rng.sample(range(100), 2)
        elif task in ("next",):
            n = rng.randint(0, 998)
        elif task == "parity":
            n = rng.randint(0, 999)
        elif task == "hello":
            q = rng.choice(HELLO_PROMPTS)
            return q, answer(task), dict(task=task)
        k = rng.randrange(len(PHRASINGS[task]))
        if held_out(task, a=a, b=b, n=n, phrasing=k) != want_held_out:
            continue
        q = PHRASINGS[task][k].format(a=a, b=b, n=n)
        return q, answer(task, a=a, b=b, n=n), dict(task=task, a=a, b=b, n=n, phrasing=k)
    raise RuntimeError(f"could not draw a {'held-out' if want_held_out else 'training'} example of {task}")


def training_conversation(rng):
    """One training conversation: mostly one exchange, sometimes two or three (the demo's chat loop keeps the
    conversation, so the model must answer the last question, not an earlier one)."""
    turns = 1 if rng.random() < 0.7 else rng.choice([2, 3])
    tasks, weights = zip(*TRAIN_WEIGHTS.items())
    msgs = []
    for _ in range(turns):
        task = rng.choices(tasks, weights)[0]
        q, a, _ = draw(task, rng, want_held_out=False)
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs


def training_stream(seed=SEED):
    rng = random.Random(seed)
    while True:
        yield training_conversation(rng)


def heldout_set(per_task=200, seed=SEED + 1):
    """The evaluation set: distinct held-out questions per evaluated task, in a fixed order."""
    rng = random.Random(seed)
    out = []
    for task in ["add", "sub", "mul", "next", "compare", "parity"]:
        seen = set()
        for _ in range(200 * per_task):
            if len(seen) == per_task:
                break
            q, a, rec = draw(task, rng, want_held_out=True)
            if q not in seen:
                seen.add(q)
                out.append(dict(task=task, prompt=q, answer=a))
        if len(seen) < per_task:
            raise RuntimeError(f"only {len(seen)} distinct held-out questions of {task}")
    return out


def check_disjoint(n_train=200_000, heldout=None):
    """No held-out question appears among the first n_train training conversations (exact string)."""
    heldout = heldout or heldout_set()
    qs = {r["prompt"] for r in heldout}
    gen = training_stream()
    for _ in range(n_train):
        for m in next(gen):
            if m["role"] == "user" and m["content"] in qs:
                raise RuntimeError(f"held-out question in the training stream: {m['content']!r}")
    return len(qs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heldout", help="write the held-out set as JSON lines to this file")
    ap.add_argument("--per-task", type=int, default=200)
    ap.add_argument("--show", type=int, default=0, help="print N training conversations")
    ap.add_argument("--check", action="store_true", help="check that training and held-out questions are disjoint")
    args = ap.parse_args()
    if args.show:
        gen = training_stream()
        for _ in range(args.show):
            print(json.dumps(next(gen), ensure_ascii=False))
    if args.heldout:
        rows = heldout_set(args.per_task)
        with open(args.heldout, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"wrote {len(rows)} held-out questions to {args.heldout}", file=sys.stderr)
    if args.check:
        n = check_disjoint()
        print(f"disjoint: {n} held-out questions, none among 200000 training conversations", file=sys.stderr)


if __name__ == "__main__":
    main()
