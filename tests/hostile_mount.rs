//! Attacks from issue 13 (an independent security review) run against a
//! real FUSE mount: a hostile cloud or local user changes CIPHERDIR while
//! it is mounted. Each test mounts its own vault and unmounts it on drop.

mod common;

use std::fs;

use common::TestMount;

/// Finding 8: the process that holds the key (here the foreground mount)
/// has core dumps disabled, so a crash never writes the key to disk.
#[test]
fn mount_process_has_core_dumps_disabled() {
    let m = TestMount::new();
    let limits = fs::read_to_string(format!("/proc/{}/limits", m.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("a core limit line");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        fields[4..6],
        ["0", "0"],
        "soft and hard core limits must be 0: {core}"
    );
}
