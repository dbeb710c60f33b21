//! Connecting: `-d CONNINFO` plus the `PG*` environment, like libpq programs.
use walstream_conn::{Client, Config, ReplicationMode};

use crate::error::CliError;

/// Builds a configuration from `-d` (a key=value string or a URI; absent: environment only)
/// for `mode`, with `application_name` defaulting to `walstream`.
pub(crate) fn config(conninfo: Option<&str>, mode: ReplicationMode) -> Result<Config, CliError> {
    let config = match conninfo {
        Some(s) => s.parse::<Config>()?,
        None => Config::new(),
    };
    let mut config = config.with_env_defaults()?;
    config.set_replication(mode);
    config.set_fallback_application_name("walstream");
    Ok(config)
}

/// Connects for `mode`.
pub(crate) async fn connect(
    conninfo: Option<&str>,
    mode: ReplicationMode,
) -> Result<Client, CliError> {
    let config = config(conninfo, mode)?;
    tracing::info!(hosts = ?config.hosts(), user = ?config.effective_user(), "connecting");
    let client = Client::connect(&config).await?;
    tracing::info!(
        server_version = client.parameter("server_version").unwrap_or("?"),
        tls = client.is_tls(),
        "connected"
    );
    Ok(client)
}
