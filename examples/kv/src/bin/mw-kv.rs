//! `mw-kv`: run a key-value node, or talk to one. See `mw-kv --help`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = mw_kv::cli::Cli::parse();
    let mut out = std::io::stdout();
    match mw_kv::cli::run(cli, &mut out).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mw-kv: {}", mw::run::chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
