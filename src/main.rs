//! The `veilfs` binary: parse the command line, run it, and turn an error
//! into one `veilfs: error: ...` line and an exit code (see README.md).

use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let cli = veilfs::cli::Cli::parse();
    if let Err(e) = veilfs::cli::run(cli) {
        eprintln!("veilfs: error: {e}");
        std::process::exit(e.exit_code());
    }
}
