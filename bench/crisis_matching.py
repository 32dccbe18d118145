"""Time the crisis recognition over the corpus, and count what it recognises.

Reads tests/corpus/*.txt (crisis_*, self_harm_*, ordinary_*: one message per line),
builds the voice and SMS engines for the GB region, and for each channel prints the
mean and the slowest time one message takes to read (Engine.is_crisis, which every
call step and every text goes through), with the share of each corpus read as danger.

Run: .venv/bin/python bench/crisis_matching.py [--corpus DIR] [--rounds N]
(--corpus lets an older checkout be measured on the same messages.)
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from helpline.application.config import Settings
from helpline.conversation.lint import load_flows
from helpline.conversation.model import Medium

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus"


def read_corpus(directory: Path) -> dict[str, list[str]]:
    """Return the messages of each corpus file, by the file's stem."""
    found = {}
    for path in sorted(directory.glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        found[path.stem] = [line.strip() for line in lines if line.strip() and line[0] != "#"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    corpus = read_corpus(args.corpus)
    messages = [m for lines in corpus.values() for m in lines]
    library = load_flows(Settings().flows_dir)
    for channel in Medium:
        engine = library.engine(channel, "GB")
        per_message = []
        for message in messages:
            started = time.perf_counter()
            for _ in range(args.rounds):
                engine.is_crisis(message)
            per_message.append((time.perf_counter() - started) / args.rounds * 1e6)
        rates = ", ".join(
            f"{name} {sum(map(engine.is_crisis, lines)) / len(lines):.0%}"
            for name, lines in corpus.items()
        )
        print(
            f"{channel.value:5}: {len(messages)} messages, mean {statistics.mean(per_message):.1f}"
            f" us, median {statistics.median(per_message):.1f} us,"
            f" slowest {max(per_message):.1f} us; read as danger: {rates}"
        )


if __name__ == "__main__":
    main()
