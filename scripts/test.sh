#!/usr/bin/env bash
# Runs every check of the project, installing what is missing first.
#
#   scripts/test.sh
#
# To extend: add a "command:debian-package" pair to APT_NEEDS for a tool the
# tests need, and a `step ...` line at the end for a new check.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# A command the tests need, and the Debian package that provides it.
APT_NEEDS=(
  "fusermount3:fuse3"
  "sqlite3:sqlite3"
  "python3:python3"
  # Real applications on a mount (tests/apps.rs) and xattr tools.
  "git:git"
  "rsync:rsync"
  "setfattr:attr"
  # Two-device and cloud round-trip tests (tests/sync_*.rs) drive the real
  # clients; they fail, never skip, when these are missing.
  "syncthing:syncthing"
  "rclone:rclone"
  # The man page, the mount(8)/fstab helper and the systemd units
  # (tests/habits.rs).
  "man:man-db"
  "mount.fuse3:fuse3"
  "systemd-analyze:systemd"
  "unshare:util-linux"
)

missing=()
for pair in "${APT_NEEDS[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
# A completion the README's install section loads (tests/habits.rs).
[[ -f /usr/share/bash-completion/bash_completion ]] || missing+=(bash-completion)
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo is missing: install Rust (https://rustup.rs)" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "==> installing the $component component"
    rustup component add "$component"
  fi
done

step() {
  echo "==> $*"
  "$@"
}

step cargo fmt --all -- --check
# No two modules of src/ import each other (docs/ARCHITECTURE.md).
step python3 scripts/check_modules.py
step cargo clippy --all-targets --locked -- -D warnings
step cargo test --all-targets --locked -- --skip load_under_8_processes
# The 8-process load tests (with and without the writeback cache, side by
# side), once: a 30-minute soak of both under stress-ng disk pressure and
# cache dropping passed 20 runs of 20 (tests/load.rs, "Recorded runs").
step cargo test --locked --test load
step cargo test --doc --locked
# The independent Python implementation of docs/FORMAT.md must agree with
# the pinned vectors (skipped without python3-cryptography >= 44).
step python3 tests/format_reference.py --check

echo "==> all checks passed"
