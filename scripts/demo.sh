#!/usr/bin/env bash
# The main job, end to end on a fresh machine: build veilfs, create a demo
# vault, mount it, write chat-like files (a SQLite messages database, a
# photo, a voice note), show that CIPHERDIR holds only ciphertext, read the
# files back through the mount, and unmount.
#
#   scripts/demo.sh            # uses ./demo-vault (kept afterwards)
#   DEMO_DIR=/tmp/x scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
install_missing() {
  local pkgs=()
  need fusermount3 || pkgs+=(fuse3)
  need sqlite3 || pkgs+=(sqlite3)
  need cargo || { echo "demo: cargo is required (https://rustup.rs)" >&2; exit 1; }
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "==> installing ${pkgs[*]}"
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq "${pkgs[@]}" >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null; fi
  fi
}
install_missing

echo "==> building veilfs (release)"
cargo build --release --quiet
VEILFS="$PWD/target/release/veilfs"

DEMO_DIR=${DEMO_DIR:-$PWD/demo-vault}
CIPHER="$DEMO_DIR/cipher"
MNT="$DEMO_DIR/mnt"
PASSFILE="$DEMO_DIR/password.txt"
mkdir -p "$DEMO_DIR"
if mountpoint -q "$MNT" 2>/dev/null; then fusermount3 -u "$MNT"; fi
rm -rf "$CIPHER" "$MNT"
mkdir -p "$MNT"
cleanup() { mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u "$MNT" || true; }
trap cleanup EXIT

printf 'correct horse battery staple\n' > "$PASSFILE"
chmod 600 "$PASSFILE"

echo "==> veilfs init $CIPHER   (password vault; the recovery key is printed once)"
"$VEILFS" init --passfile "$PASSFILE" "$CIPHER"

echo "==> veilfs mount $CIPHER $MNT"
"$VEILFS" mount --passfile "$PASSFILE" "$CIPHER" "$MNT"

echo "==> writing chat-like files through the mount"
mkdir -p "$MNT/Databases" "$MNT/Media/Photos" "$MNT/Media/Voice Notes"
sqlite3 "$MNT/Databases/msgstore.db" <<'SQL'
PRAGMA journal_mode=WAL;
CREATE TABLE messages(id INTEGER PRIMARY KEY, chat_id INTEGER, ts INTEGER, sender TEXT, body TEXT);
CREATE INDEX by_chat ON messages(chat_id, ts);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000)
INSERT INTO messages(chat_id, ts, sender, body)
  SELECT i % 20, 1764150000 + i, 'alice', 'see you at the station at ' || i || ' o''clock' FROM n;
SQL
head -c $((3 * 1024 * 1024)) /dev/urandom > "$MNT/Media/Photos/IMG-20261126-WA0001.jpg"
head -c $((600 * 1024)) /dev/urandom > "$MNT/Media/Voice Notes/PTT-20261126-WA0002.opus"

echo "==> what the cloud sees in CIPHERDIR (names and sizes only):"
(cd "$CIPHER" && find . -printf '%y %10s  %p\n' | sort -k3 | head -30)
if grep -rqa "see you at the station" "$CIPHER"; then
  echo "demo: FAILED: plaintext found in $CIPHER" >&2; exit 1
fi
echo "    (no plaintext message text anywhere in $CIPHER)"

echo "==> reading back through the mount"
sqlite3 "$MNT/Databases/msgstore.db" "PRAGMA integrity_check; SELECT count(*) || ' messages' FROM messages; SELECT sender || ': ' || body FROM messages WHERE chat_id=7 ORDER BY ts DESC LIMIT 2;"
ls -l "$MNT/Media/Photos" "$MNT/Media/Voice Notes"

echo "==> fusermount3 -u $MNT"
fusermount3 -u "$MNT"
echo "demo: OK. The vault stays in $CIPHER (password in $PASSFILE)."
echo "      Mount it again: $VEILFS mount --passfile $PASSFILE $CIPHER $MNT"
