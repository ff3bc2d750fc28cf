//! Reading what derivation recorded, and waiting for the poll baseline.

use std::time::Duration;

/// Removes and returns the events recorded so far as (topic, entity id, audience), in
/// derivation order.
pub async fn take_scoped(client: &tokio_postgres::Client) -> Vec<(String, String, i16)> {
    let rows = client
        .query(
            "DELETE FROM ckan_webhooks.event RETURNING seq, topic, entity->>'id', audience",
            &[],
        )
        .await
        .unwrap();
    let mut events: Vec<(i64, String, String, i16)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    events.sort();
    events.into_iter().map(|(_, t, id, a)| (t, id, a)).collect()
}

/// Expected events as (topic, entity id), from literals.
pub fn ev(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(t, id)| (t.to_string(), id.to_string()))
        .collect()
}

/// Waits (up to 20 s) until the first poll pass has taken its baseline.
pub async fn wait_for_baseline(client: &tokio_postgres::Client) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM ckan_webhooks.poll_state WHERE name = 'baseline')",
                &[],
            )
            .await
            .unwrap();
        if row.get(0) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no baseline taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
