//! `herald`: runs the server with configuration from the environment.

use anyhow::Context;
use server::config::Config;
use server::startup::Application;
use server::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let config = Config::from_env()?;
    let leptos_options = leptos::config::get_configuration(None).context("reading Leptos settings")?.leptos_options;
    let app = Application::build(config, leptos_options).await?;
    tracing::info!("herald listening on http://{}", app.local_addr());
    app.run_until_stopped(shutdown_signal()).await.context("serving")
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
