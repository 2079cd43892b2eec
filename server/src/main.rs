//! `herald`: serves Herald, or signs a user token for trying it out.
//!
//! Configuration comes from a TOML file and the environment
//! (`docs/CONFIG.md`).

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use herald::room::RoomPatterns;
use herald::{DisplayName, UserId};
use server::auth::tokens::Tokens;
use server::config::Config;
use server::config::parse_duration_or_secs;
use server::ops::telemetry;
use server::startup::Application;

/// Herald: a real-time chat and notification server.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML configuration file (keys as in docs/CONFIG.md, without the
    /// HERALD_ prefix); environment variables override it. Default:
    /// $HERALD_CONFIG, if set.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Herald (the default).
    Serve,
    /// Print a user token signed with the first of HERALD_TOKEN_SECRETS.
    Token {
        /// The user id (the token's `sub`).
        #[arg(long)]
        sub: String,
        /// The display name (the token's `name`).
        #[arg(long)]
        name: Option<String>,
        /// A private room (pattern) the user may join, the token's `rooms`;
        /// repeat for several: --room team-a --room 'support-*'.
        #[arg(long = "room")]
        rooms: Vec<String>,
        /// How long the token is valid: 90s, 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = parse_duration_or_secs)]
        ttl: std::time::Duration,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Token { sub, name, rooms, ttl } => {
            let tokens = Tokens::new(&config.token_secrets, config.token_audience.as_deref());
            if !tokens.is_configured() {
                bail!("HERALD_TOKEN_SECRETS is not set: there is no secret to sign with");
            }
            let user = UserId::parse(&sub).context("--sub")?;
            let name = name.map(|n| DisplayName::parse(&n)).transpose().context("--name")?;
            let rooms = RoomPatterns::parse(&rooms).context("--room")?;
            println!("{}", tokens.issue_with_rooms(&user, name.as_ref(), &rooms, ttl)?);
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log_format);
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
