#!/usr/bin/env python3
"""Chat-app style SQLite workload used by scripts/bench.sh.

A fresh database in WAL mode (synchronous=NORMAL) gets a `messages` table
(id, chat_id, ts, sender, body ~200 bytes) with an index on (chat_id, ts).
ROWS messages are inserted in transactions of BATCH rows, then QUERIES point
queries `WHERE chat_id=? ORDER BY ts DESC LIMIT 50` are run.

usage: sqlite_chat.py DB ROWS BATCH QUERIES
prints: "<inserts per second> <queries per second>"
"""
import base64
import os
import random
import sqlite3
import sys
import time

CHATS = 500


def main() -> None:
    db, rows, batch, queries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    rng = random.Random(42)
    senders = [f"user{i:04d}" for i in range(200)]

    con = sqlite3.connect(db, isolation_level=None)
    mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal":
        sys.exit(f"sqlite_chat: could not enable WAL mode (got {mode!r})")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, chat_id INTEGER NOT NULL,"
        " ts INTEGER NOT NULL, sender TEXT NOT NULL, body TEXT NOT NULL)"
    )
    con.execute("CREATE INDEX messages_chat_ts ON messages (chat_id, ts)")

    # Pre-generate the rows so that the timed loop measures SQLite + filesystem.
    ts0 = 1_700_000_000_000
    data = [
        (
            rng.randrange(CHATS),
            ts0 + i * 1000 + rng.randrange(1000),
            rng.choice(senders),
            base64.b64encode(rng.randbytes(rng.randint(110, 190))).decode(),  # ~200 chars
        )
        for i in range(rows)
    ]
    sql = "INSERT INTO messages (chat_id, ts, sender, body) VALUES (?, ?, ?, ?)"

    t0 = time.perf_counter()
    for start in range(0, rows, batch):
        con.execute("BEGIN")
        con.executemany(sql, data[start : start + batch])
        con.execute("COMMIT")
    t_insert = time.perf_counter() - t0

    chat_ids = [rng.randrange(CHATS) for _ in range(queries)]
    q = "SELECT id, ts, sender, body FROM messages WHERE chat_id=? ORDER BY ts DESC LIMIT 50"
    t0 = time.perf_counter()
    got = 0
    for cid in chat_ids:
        got += len(con.execute(q, (cid,)).fetchall())
    t_query = time.perf_counter() - t0
    con.close()
    if got == 0:
        sys.exit("sqlite_chat: queries returned no rows")
    print(f"{rows / t_insert:.1f} {queries / t_query:.1f}")


if __name__ == "__main__":
    main()
