//! The `veilfs` binary: parse the command line, run it, and turn an error
//! into one `veilfs: error: ...` line and an exit code (see README.md).

use clap::Parser;

fn main() {
    let cli = veilfs::cli::Cli::parse();
    veilfs::cli::init_logging(&cli);
    if let Err(e) = veilfs::cli::run(cli) {
        eprintln!("veilfs: error: {e}");
        std::process::exit(e.exit_code());
    }
}
