//! `wxcloudrun-sidecar [OPTIONS] [-- COMMAND [ARGS...]]`: see `--help`.

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wxcloudrun_sidecar::config::{Cli, Config, EXIT_CONFIG, EXIT_INTERNAL, print};

/// Counted, so that the memory budget knows the heap in use (see `allocator.rs`).
#[global_allocator]
static ALLOCATOR: wxcloudrun_sidecar::allocator::CountingAllocator =
    wxcloudrun_sidecar::allocator::CountingAllocator;

fn main() {
    // The sidecar's clients carry their own TLS config; this covers any other.
    wxcloudrun_connect::tls::install_default_provider();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            let help = matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            );
            let _ = err.print();
            std::process::exit(if help { 0 } else { EXIT_CONFIG });
        }
    };
    let config = match Config::load(cli, |key| std::env::var(key).ok()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("wxcloudrun-sidecar: {err}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    if config.check_only {
        print!("{}", print::render(&config));
        return;
    }

    // The sidecar's own logs: JSON on stdout like the app's, filtered by WXCLOUDRUN_SIDECAR_LOG
    // (RUST_LOG belongs to the app).
    let filter = std::env::var("WXCLOUDRUN_SIDECAR_LOG").unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Event fields at the top level of each line: Tencent's log search indexes the first level.
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stdout)
        .init();

    // One thread: the sidecar shares the instance's CPU with the app.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("wxcloudrun-sidecar: cannot start the runtime: {err}");
            std::process::exit(EXIT_INTERNAL);
        }
    };
    let code = runtime.block_on(wxcloudrun_sidecar::run::run(config));
    // Background tasks (admin listener, idle connections) end with the process.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
