//! mount(8) and fstab: the `veilfs CIPHERDIR MOUNTPOINT -o OPTS` form that
//! mount.fuse3 runs for `mount -t fuse.veilfs` and for an fstab line, and
//! the `-o` options themselves.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::CommandFactory;

use super::{Cli, CliError};

/// Rewrites the command line mount.fuse3 passes (`veilfs CIPHERDIR
/// MOUNTPOINT [-o OPTS]`) into `veilfs mount [-o OPTS] CIPHERDIR
/// MOUNTPOINT`. Any other command line is returned as is: the first
/// argument is a subcommand or an option there.
pub fn mount_helper_args(args: Vec<OsString>) -> Vec<OsString> {
    let Some(first) = args.get(1).and_then(|a| a.to_str()) else {
        return args;
    };
    // A mistyped subcommand (`veilfs moutn ...`) is not a vault: only a
    // path (with a `/`, or one that exists) is taken for one.
    let looks_like_path = first.contains('/') || std::path::Path::new(first).exists();
    if args.len() < 3 || first.starts_with('-') || is_subcommand(first) || !looks_like_path {
        return args;
    }
    let mut out = Vec::with_capacity(args.len() + 2);
    out.push(args[0].clone());
    out.push("mount".into());
    out.extend(args[3..].iter().cloned());
    out.push("--".into());
    out.push(args[1].clone());
    out.push(args[2].clone());
    out
}

fn is_subcommand(name: &str) -> bool {
    name == "help"
        || Cli::command()
            .get_subcommands()
            .any(|s| s.get_name() == name || s.get_all_aliases().any(|a| a == name))
}

/// What the `-o` options set. Fields left `None`/false keep the command
/// line's value.
#[derive(Debug, Default, PartialEq)]
pub struct MountOptions {
    pub ro: bool,
    pub allow_other: bool,
    pub nonempty: bool,
    pub io_uring: bool,
    pub no_dev: bool,
    pub no_suid: bool,
    pub no_exec: bool,
    pub idle: Option<Duration>,
    pub passfile: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub extpass: Option<String>,
}

/// Options mount(8), mount.fuse3 or systemd handle, or the kernel's
/// defaults: accepted and ignored.
const IGNORED: &[&str] = &[
    "rw",
    "defaults",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "dev",
    "suid",
    "exec",
    "async",
    "atime",
    "relatime",
    "noatime",
    "nodiratime",
];

/// The options veilfs understands, for the error message.
pub const KNOWN: &str = "ro, rw, allow_other, nonempty, io_uring, idle=DURATION, passfile=FILE, \
     keyfile=FILE, extpass=CMD, nodev, nosuid, noexec, nofail, x-* (x-systemd.*), \
     and mount(8)'s generic auto, noauto, user, users, _netdev, defaults";

/// Parses `-o` option lists (each comma-separated). Unknown options are
/// one usage error naming all of them.
pub fn parse(lists: &[String]) -> Result<MountOptions, CliError> {
    let mut o = MountOptions::default();
    let mut unknown = Vec::new();
    for opt in lists.iter().flat_map(|l| l.split(',')) {
        let opt = opt.trim();
        if opt.is_empty() {
            continue;
        }
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (opt, None),
        };
        let need = |v: Option<&str>| -> Result<String, CliError> {
            match v {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => Err(CliError::Usage(format!(
                    "mount option {name} needs a value ({name}=...)"
                ))),
            }
        };
        match (name, value) {
            ("ro", None) => o.ro = true,
            ("allow_other", None) => o.allow_other = true,
            ("nonempty", None) => o.nonempty = true,
            ("io_uring", None) => o.io_uring = true,
            ("nodev", None) => o.no_dev = true,
            ("nosuid", None) => o.no_suid = true,
            ("noexec", None) => o.no_exec = true,
            ("idle", v) => o.idle = Some(parse_duration(&need(v)?)?),
            ("passfile", v) => o.passfile = Some(need(v)?.into()),
            ("keyfile" | "key_file" | "key-file", v) => o.key_file = Some(need(v)?.into()),
            ("extpass", v) => o.extpass = Some(need(v)?),
            // fsname= and subtype= are what mount.fuse3 and fstab tools
            // may add; veilfs sets its own.
            ("fsname" | "subtype", Some(_)) => {}
            (n, None) if IGNORED.contains(&n) => {}
            (n, _) if n.starts_with("x-") => {}
            _ => unknown.push(opt.to_string()),
        }
    }
    if !unknown.is_empty() {
        return Err(CliError::Usage(format!(
            "unknown mount option{} {}: veilfs understands {KNOWN}",
            if unknown.len() == 1 { "" } else { "s" },
            unknown.join(", ")
        )));
    }
    let sources = [
        o.passfile.is_some(),
        o.key_file.is_some(),
        o.extpass.is_some(),
    ];
    if sources.iter().filter(|&&s| s).count() > 1 {
        return Err(CliError::Usage(
            "give only one of the mount options passfile=, keyfile= and extpass=".into(),
        ));
    }
    Ok(o)
}

/// `90s`, `15m`, `1h30m`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, CliError> {
    let d = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text).map_err(|e| {
            CliError::Usage(format!(
                "idle time {text:?}: {e} (write it like 90s, 15m or 1h)"
            ))
        })?,
    };
    if d.is_zero() {
        return Err(CliError::Usage(
            "an idle time of 0 would unmount at once: give a duration like 15m".into(),
        ));
    }
    Ok(d)
}

/// clap value parser for `--idle`.
pub fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn mount_fuse3_form_becomes_mount() {
        assert_eq!(
            mount_helper_args(os(&["veilfs", "/v", "/m", "-o", "rw,passfile=/p"])),
            os(&["veilfs", "mount", "-o", "rw,passfile=/p", "--", "/v", "/m"])
        );
        assert_eq!(
            mount_helper_args(os(&["veilfs", "/v", "/m"])),
            os(&["veilfs", "mount", "--", "/v", "/m"])
        );
        for unchanged in [
            &["veilfs", "mount", "/v", "/m"][..],
            &["veilfs", "ls", "/v", "/x"],
            &["veilfs", "--help"],
            &["veilfs", "-q", "info", "/v"],
            &["veilfs", "help", "mount"],
            &["veilfs", "/v"],
            &["veilfs", "moutn", "/v", "/m"],
        ] {
            assert_eq!(mount_helper_args(os(unchanged)), os(unchanged));
        }
    }

    #[test]
    fn options_map_onto_fields() {
        let o = parse(&[
            "rw,passfile=/etc/pw,allow_other,nonempty,io_uring,idle=15m,nofail".into(),
            "x-systemd.automount,x-systemd.idle-timeout=60,_netdev,dev,suid,ro,nosuid".into(),
        ])
        .unwrap();
        assert_eq!(
            o,
            MountOptions {
                ro: true,
                allow_other: true,
                nonempty: true,
                io_uring: true,
                no_suid: true,
                idle: Some(Duration::from_secs(900)),
                passfile: Some("/etc/pw".into()),
                ..MountOptions::default()
            }
        );
        let o = parse(&["keyfile=/k,extpass=".into()]);
        assert!(o.is_err());
        let o = parse(&["extpass=pass show v".into()]).unwrap();
        assert_eq!(o.extpass.as_deref(), Some("pass show v"));
        assert_eq!(
            parse(&["idle=90".into()]).unwrap().idle,
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn unknown_options_are_named() {
        let e = parse(&["ro,frobnicate,uid=5,allow_other".into()]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("unknown mount options frobnicate, uid=5"),
            "{msg}"
        );
        assert_eq!(e.exit_code(), super::super::EXIT_USAGE);
        assert!(parse(&["passfile=/a,keyfile=/b".into()]).is_err());
        assert!(parse(&["idle=0".into()]).is_err());
        assert!(parse(&["idle=soon".into()]).is_err());
        assert!(parse(&["ro=1".into()]).is_err());
    }
}
