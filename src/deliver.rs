//! Placeholder until the deliverer lands.
/// Placeholder.
pub async fn run(
    _pool: deadpool_postgres::Pool,
    _config: crate::config::DeliveryConfig,
    _site_url: String,
    _wake: std::sync::Arc<tokio::sync::Notify>,
    shutdown: tokio_util::sync::CancellationToken,
) -> crate::error::Result<()> {
    shutdown.cancelled().await;
    Ok(())
}
