//! The `veilfs` binary: parse the command line, run it, and turn an error
//! into one `veilfs: error: ...` line and an exit code (see README.md).

use clap::Parser;

fn main() {
    // mount(8) runs `veilfs CIPHERDIR MOUNTPOINT -o OPTS` (mount.fuse3).
    let args = veilfs::cli::mount_helper_args(std::env::args_os().collect());
    let cli = veilfs::cli::Cli::parse_from(args);
    veilfs::cli::init_logging(&cli);
    if let Err(e) = veilfs::cli::run(cli) {
        eprintln!("veilfs: error: {e}");
        std::process::exit(e.exit_code());
    }
}
