//! Placeholder until the action API lands.
use crate::config::MinimumAuth;
/// Shared state of the API.
pub struct ApiState {
    /// Pool.
    pub pool: deadpool_postgres::Pool,
    /// Site URL.
    pub site_url: String,
    /// Token secret.
    pub token_secret: Vec<u8>,
    /// Minimum auth.
    pub minimum_auth: MinimumAuth,
    /// Allow private targets.
    pub allow_private_targets: bool,
}
/// Placeholder.
pub async fn serve(
    _listener: tokio::net::TcpListener,
    _state: std::sync::Arc<ApiState>,
    shutdown: tokio_util::sync::CancellationToken,
) -> crate::error::Result<()> {
    shutdown.cancelled().await;
    Ok(())
}
