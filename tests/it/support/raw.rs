//! Receivers that misbehave below HTTP, on raw sockets at 127.0.0.1:0: one that resets
//! the connection once the request has arrived, and one that answers `200` with
//! headers at once but trickles its body a byte at a time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a [`RawReceiver`] treats each connection.
#[derive(Debug, Clone, Copy)]
pub enum Misbehaviour {
    /// Reads the request, then closes with a TCP reset (linger 0).
    Reset,
    /// Sends `200` headers promising `length` bytes, then one byte per `every`.
    Trickle {
        /// The declared Content-Length.
        length: usize,
        /// The pause between two body bytes.
        every: Duration,
    },
}

/// A raw-socket receiver; stops when dropped.
pub struct RawReceiver {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl RawReceiver {
    /// Starts one that treats every connection as `how`.
    pub async fn start(how: Misbehaviour) -> RawReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let server = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let counted = counted.clone();
                connections.spawn(async move {
                    if read_request(&stream).await {
                        counted.fetch_add(1, Ordering::SeqCst);
                        misbehave(stream, how).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        RawReceiver {
            addr,
            requests,
            server,
        }
    }

    /// The hook URL.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Requests that arrived whole.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for RawReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Reads one request's head and its Content-Length body; false if the peer went away.
async fn read_request(stream: &TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if stream.readable().await.is_err() {
            return false;
        }
        match stream.try_read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return false,
        }
        let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if seen.len() >= end + 4 + length {
            return true;
        }
    }
}

async fn misbehave(mut stream: TcpStream, how: Misbehaviour) {
    match how {
        Misbehaviour::Reset => {
            // Linger 0 turns the close into a reset.
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        Misbehaviour::Trickle { length, every } => {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n");
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..length {
                tokio::time::sleep(every).await;
                if stream.write_all(b"x").await.is_err() {
                    return;
                }
            }
            let _ = stream.read(&mut [0u8; 1]).await;
        }
    }
}
