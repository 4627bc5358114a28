"""Fixed data, tokenizer and evaluation of the ``cpu-gpt`` task. An optimizer must not edit this.

Everything that decides what "better" means lives here, so that two trials with different
``train.py`` knobs are scored on exactly the same validation bytes:

- the text is the Python documentation shipped with CPython (``pydoc_data.topics``), so it is
  real English prose and code that every Python install has offline;
- the tokenizer is the identity on UTF-8 bytes (vocabulary 256), so the cross-entropy in bits
  per token *is* bits per byte, with no tokenizer-dependent conversion;
- validation is a fixed, deterministic set of windows spread over the held-out bytes.

The prepared byte arrays are cached under ``$CENTAUR_CACHE_DIR`` (default
``~/.cache/centaur-hpo/cpu_gpt``); building them takes well under a second.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

# ---------------------------------------------------------------------------------------------
# Fixed constants (train.py imports these; changing them changes the task)

MAX_SEQ_LEN = 128  # context length in bytes
TIME_BUDGET = 30.0  # default training seconds; train.py prefers $CENTAUR_TRIAL_BUDGET
EVAL_TOKENS = 128 * MAX_SEQ_LEN  # validation bytes scored (16384)
VOCAB_SIZE = 256  # byte-level: every UTF-8 byte is one token

VAL_BLOCK = 4096  # the text is cut into blocks of this many bytes ...
VAL_EVERY = 10  # ... and every 10th block is held out, so validation samples the whole corpus

CACHE_ENV = "CENTAUR_CACHE_DIR"
DATA_VERSION = 1  # bump when the corpus recipe changes, so old caches are not reused

# ---------------------------------------------------------------------------------------------
# Tokenizer


def encode(text: str) -> list[int]:
    """Text to byte tokens (0..255)."""
    return list(text.encode("utf-8"))


def decode(tokens: list[int] | torch.Tensor) -> str:
    """Byte tokens back to text; bytes cut mid-character decode to U+FFFD rather than failing."""
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.tolist()
    return bytes(tokens).decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------
# Data


def corpus_text() -> str:
    """The documentation topics joined in sorted-key order, with repeated paragraphs dropped.

    Many topics embed others verbatim (``compound`` contains ``if``, ``while``, ...); without
    de-duplication half of the validation text also appears in training, which would reward
    memorisation instead of modelling.
    """
    from pydoc_data.topics import topics

    seen: set[str] = set()
    paragraphs: list[str] = []
    for key in sorted(topics):
        for para in topics[key].split("\n\n"):
            body = para.strip("\n")
            if body.strip() and body.strip() not in seen:
                seen.add(body.strip())
                paragraphs.append(body)
    return "\n\n".join(paragraphs)


def split_corpus(data: bytes) -> tuple[bytes, bytes]:
    """Deterministic interleaved split: every ``VAL_EVERY``-th block of ``VAL_BLOCK`` bytes is
    validation, the rest training. The two never share a byte position."""
    blocks = [data[i : i + VAL_BLOCK] for i in range(0, len(data), VAL_BLOCK)]
    train = b"".join(b for i, b in enumerate(blocks) if i % VAL_EVERY != VAL_EVERY - 1)
    val = b"".join(b for i, b in enumerate(blocks) if i % VAL_EVERY == VAL_EVERY - 1)
    return train, val


def cache_dir() -> Path:
    """Where prepared arrays live; one sub-folder per Python build, whose docs may differ."""
    root = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "centaur-hpo" / "cpu_gpt")
    import pydoc_data

    src = Path(pydoc_data.__file__).parent / "topics.py"
    stat = src.stat() if src.exists() else None
    ident = (
        f"{DATA_VERSION}|{sys.version}|{src}|{stat and stat.st_size}|{stat and stat.st_mtime_ns}"
    )
    return Path(root) / hashlib.sha256(ident.encode()).hexdigest()[:16]


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so parallel trials never read a half file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prepare_data() -> Path:
    """Build the train/val byte files if missing; returns their folder."""
    folder = cache_dir()
    if not ((folder / "train.bin").exists() and (folder / "val.bin").exists()):
        folder.mkdir(parents=True, exist_ok=True)
        train, val = split_corpus(corpus_text().encode("utf-8"))
        if len(val) < EVAL_TOKENS + 1:
            raise RuntimeError(f"validation split has {len(val)} bytes, need {EVAL_TOKENS + 1}")
        _write_atomic(folder / "train.bin", train)
        _write_atomic(folder / "val.bin", val)
    return folder


def load_split(split: str) -> torch.Tensor:
    """The ``train`` or ``val`` bytes as a 1-D uint8 tensor."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    raw = (prepare_data() / f"{split}.bin").read_bytes()
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)


def make_dataloader(
    split: str, batch_size: int, seq_len: int = MAX_SEQ_LEN, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches of random windows: inputs and next-byte targets, both int64 (B, T).

    Windows start at uniformly random offsets drawn from a generator seeded with ``seed``, so a
    run's data order depends on the seed alone.
    """
    data = load_split(split).long()
    if len(data) < seq_len + 2:
        raise ValueError(f"{split} split is shorter than one sequence")
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.arange(seq_len + 1)
    while True:
        starts = torch.randint(0, len(data) - seq_len - 1, (batch_size, 1), generator=gen)
        window = data[starts + offsets]
        yield window[:, :-1], window[:, 1:]


# ---------------------------------------------------------------------------------------------
# Evaluation


def eval_starts(n_bytes: int, eval_tokens: int = EVAL_TOKENS) -> torch.Tensor:
    """Start offsets of the validation windows: ``eval_tokens // MAX_SEQ_LEN`` non-overlapping
    windows spread evenly over the whole held-out split, so the score covers every part of the
    corpus rather than only its first topics. The same offsets for every trial."""
    n_seq = eval_tokens // MAX_SEQ_LEN
    stride = (n_bytes - 1) // max(n_seq, 1)
    if n_seq < 1 or stride < MAX_SEQ_LEN:
        raise ValueError(
            f"eval_tokens={eval_tokens} does not fit in the {n_bytes}-byte validation split"
        )
    return torch.arange(n_seq) * stride


@torch.no_grad()
def evaluate_bpb(
    model: Callable[..., torch.Tensor], batch_size: int = 32, eval_tokens: int = EVAL_TOKENS
) -> float:
    """Validation bits per byte over ``eval_tokens`` fixed held-out bytes.

    ``model(x, y, reduction="none")`` must return the per-token cross-entropy in nats, shape
    (B, T). The windows (see :func:`eval_starts`) are the same for every trial, so scores are
    comparable. Since a token is a byte, bits per byte is the mean loss divided by ln 2; a model
    that predicts uniformly scores exactly 8.0.
    """
    data = load_split("val").long()
    starts = eval_starts(len(data), eval_tokens)
    was_training = getattr(model, "training", None)
    if was_training is not None:
        model.eval()  # type: ignore[attr-defined]
    total_nats, total_tokens = 0.0, 0
    for first in range(0, len(starts), batch_size):
        rows = starts[first : first + batch_size]
        window = data[rows[:, None] + torch.arange(MAX_SEQ_LEN + 1)]
        loss = model(window[:, :-1], window[:, 1:], reduction="none")
        total_nats += float(loss.double().sum())
        total_tokens += loss.numel()
    if was_training:
        model.train()  # type: ignore[attr-defined]
    return total_nats / (total_tokens * math.log(2))


if __name__ == "__main__":
    folder = prepare_data()
    for name in ("train", "val"):
        print(f"{name}: {len(load_split(name)):,} bytes in {folder / (name + '.bin')}")
