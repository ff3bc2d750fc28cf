//! Graceful shutdown: a request in flight when shutdown starts still gets its answer,
//! and the listener is closed once `serve` returns.

use crate::support::api::ApiServer;
use crate::support::ckan_users;
use crate::support::db::TestDb;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads from `stream` until `needle` has arrived; answers everything read.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{needle:?} within 10 s"))
            .unwrap();
        assert!(n > 0, "connection closed before {needle:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn in_flight_requests_finish_after_shutdown_starts() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let addr = api.addr;

    // `Expect: 100-continue` makes the server say when the handler starts reading the
    // body, so the test knows the request is in flight without sleeping.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/3/action/webhook_list HTTP/1.1\r\nhost: {addr}\r\n\
         authorization: {}\r\ncontent-type: application/json\r\n\
         content-length: 2\r\nexpect: 100-continue\r\n\r\n",
        alice.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    read_until(&mut stream, "100 Continue").await;

    api.begin_shutdown();
    stream.write_all(b"{}").await.unwrap();
    let answer = read_until(&mut stream, "\"success\":true").await;
    assert!(answer.contains("200 OK"), "{answer}");

    api.stop().await;
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}
