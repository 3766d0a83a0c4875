//! `tally view`: the collector's dashboard for the user's own store, served read-only on
//! 127.0.0.1 at a free port, behind a random token (`tally_server::dashboard::local`).
//! Nothing leaves the machine: the page loads only from this server, and the server
//! reads only the local file.

use anyhow::{Context, bail};
use clap::Args;
use tally::cli::Target;

/// Options of `tally view`.
#[derive(Debug, Args)]
pub(crate) struct ViewArgs {
    /// Open the page in the default browser too.
    #[arg(long)]
    open: bool,
    /// The loopback port to listen on (default: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

pub(crate) fn view(target: &Target, args: &ViewArgs) -> anyhow::Result<()> {
    let path = target.settings().dir.join(tally_store::DB_FILE_NAME);
    if !path.exists() {
        bail!(
            "no telemetry recorded yet for {} (no store at {}); run the app first, or try `tally demo --app {}`",
            target.app,
            path.display(),
            target.app
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(tally_server::dashboard::local::serve(
            &path,
            &target.app,
            args.port,
            |url| {
                println!("{} telemetry, read-only, on this machine only:", target.app);
                println!("{url}");
                println!("(Ctrl-C stops it)");
                if args.open
                    && let Err(err) = tally_server::dashboard::local::open_in_browser(url)
                {
                    eprintln!("tally: cannot start a browser ({err}); open the address above yourself");
                }
            },
        ))
        .with_context(|| format!("cannot serve {}", path.display()))
}
