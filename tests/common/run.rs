//! One run of the `veilfs` binary and its outcome, for the CLI tests.

use std::io::Write;
use std::process::{Command, Stdio};

use super::BIN;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn fails(self, code: i32, needle: &str) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    /// [`Self::fails`], with the error on one `veilfs: error:` line.
    pub fn fails_in_one_line(self, code: i32, needle: &str) -> Self {
        let run = self.fails(code, needle);
        assert!(
            run.stderr.starts_with("veilfs: error: ") && run.stderr.lines().count() == 1,
            "expected one `veilfs: error:` line, got:\n{}",
            run.stderr
        );
        run
    }
}

/// Runs veilfs with `stdin` as its standard input (nothing: /dev/null).
pub fn veilfs_in(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run veilfs");
    if let Some(input) = stdin {
        // veilfs may refuse before reading it.
        let _ = child.stdin.take().unwrap().write_all(input);
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

pub fn veilfs(args: &[&str]) -> Run {
    veilfs_in(args, None)
}
