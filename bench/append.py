"""Signed appends per second (parse, verify, check, append: one statement per save) next to raw
eventsourcing single-event saves of the same payload on the same store, in the same run."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

if not __package__:  # run as a file: bench/ must not shadow the `domain` package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.common import Note, Reference, compared, rate, report, store_urls
from ledger import keys
from ledger.author import Author
from ledger.authority import Authority
from ledger.ledger import Ledger
from ledger.store import parse_store

ORIGIN = "bench.example/accord"
COUNTS = {"sqlite": 2000, "postgres": 1000}
ROUNDS = 3
TARGET = 0.5


def signed_rate(url: str, count: int) -> float:
    authority_key = keys.generate()
    with Ledger(url, ORIGIN, authority_key.public_key()) as ledger:
        authority = Authority(ledger, authority_key)
        authority.open("authority")
        person = authority.register("Bench", "professional")
        key = keys.generate()
        authority.bind(person, key.public_key())
        author = Author(ORIGIN, person, key)
        stream = str(uuid.uuid4())
        submissions = [author.submission(stream, "note.made", {"n": n}) for n in range(count)]

        def run() -> None:
            for submission in submissions:
                ledger.submit(submission)

        return rate(count, run)


def raw_rate(url: str, count: int, payload: str) -> float:
    with Reference(env=parse_store(url).env) as app:
        note = Note()
        app.save(note)

        def run() -> None:
            for _ in range(count):
                note.note(payload)
                app.save(note)

        return rate(count, run)


def main() -> None:
    results = []
    sample = Author(ORIGIN, str(uuid.uuid4()), keys.generate())
    payload = sample.submission(str(uuid.uuid4()), "note.made", {"n": 0}).decode()
    with store_urls() as kinds:
        for store, fresh in kinds:
            count = COUNTS[store]
            signed, raw = [], []
            for round_ in range(ROUNDS):
                raw.append(raw_rate(fresh(f"raw{round_}"), count, payload))
                signed.append(signed_rate(fresh(f"signed{round_}"), count))
            results.append(compared("signed_append", store, "statements/s", signed, raw, TARGET))
    report("append", results)


if __name__ == "__main__":
    main()
