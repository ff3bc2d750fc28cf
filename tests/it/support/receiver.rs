//! A recording webhook receiver on 127.0.0.1:0. It keeps every request (method, path,
//! headers, body, arrival time) and answers what the test scripts: a default reply,
//! optionally preceded by a queue of one-off replies (status, delay, headers, body).
//!
//! ```ignore
//! let receiver = Receiver::start().await;
//! receiver.respond_in_turn([Reply::status(500)]); // then the default, 200
//! // ... point a subscription at receiver.url() ...
//! let got = receiver.wait_for(2, Duration::from_secs(10)).await;
//! ```

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    delay: Duration,
    headers: Vec<(String, String)>,
    body: ReplyBody,
}

#[derive(Debug, Clone)]
enum ReplyBody {
    Text(Bytes),
    /// That many filler bytes, streamed in chunks and counted as they are written.
    Filler(usize),
}

impl Reply {
    /// An empty answer with `status`.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            delay: Duration::ZERO,
            headers: Vec::new(),
            body: ReplyBody::Text(Bytes::new()),
        }
    }

    /// `200 OK`, empty.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// Waits this long before answering (a slow or hanging receiver).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Adds a response header, e.g. `retry-after` or `location`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A text body.
    pub fn body(mut self, text: &str) -> Self {
        self.body = ReplyBody::Text(Bytes::copy_from_slice(text.as_bytes()));
        self
    }

    /// A body of `bytes` filler bytes, streamed; see [`Receiver::filler_written`].
    pub fn filler(mut self, bytes: usize) -> Self {
        self.body = ReplyBody::Filler(bytes);
        self
    }
}

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The HTTP method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// All request headers.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
    /// When the request had fully arrived.
    pub at: Instant,
}

impl Recorded {
    /// A header's value as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }
}

struct State {
    recorded: Mutex<Vec<Recorded>>,
    queue: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    count: watch::Sender<usize>,
    filler_written: AtomicUsize,
}

impl State {
    fn next_reply(&self) -> Reply {
        let queued = self.queue.lock().unwrap().pop_front();
        queued.unwrap_or_else(|| self.default.lock().unwrap().clone())
    }
}

type ReplyBodyStream = UnsyncBoxBody<Bytes, Infallible>;

/// A receiver listening on 127.0.0.1; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver on a free port, answering `200` until told otherwise.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            recorded: Mutex::new(Vec::new()),
            queue: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::ok()),
            count: watch::channel(0).0,
            filler_written: AtomicUsize::new(0),
        });

        let shared = state.clone();
        let server = tokio::spawn(async move {
            // Connections live in this set, so stopping the server ends them too.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });

        Receiver {
            addr,
            state,
            server,
        }
    }

    /// The hook URL to subscribe: `http://127.0.0.1:<port>/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The receiver's socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers every following request with `reply` (after any queued replies).
    pub fn respond_with(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = reply;
    }

    /// Answers the next requests with `replies`, one each, then with the default.
    pub fn respond_in_turn(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.queue.lock().unwrap().extend(replies);
    }

    /// Every request so far, in arrival order.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.state.recorded.lock().unwrap().clone()
    }

    /// Filler bytes handed to the connection so far, across all replies.
    pub fn filler_written(&self) -> usize {
        self.state.filler_written.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have arrived and returns all of them; panics
    /// after `timeout` saying how many did arrive.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let mut count = self.state.count.subscribe();
        let reached = tokio::time::timeout(timeout, count.wait_for(|c| *c >= n)).await;
        if reached.is_err() {
            panic!(
                "expected {n} requests at {} within {timeout:?}, got {}",
                self.addr,
                self.recorded().len()
            );
        }
        self.recorded()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Records one request and answers it as scripted.
async fn answer(
    state: Arc<State>,
    request: hyper::Request<Incoming>,
) -> hyper::Response<ReplyBodyStream> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let reply = state.next_reply();
    {
        let mut recorded = state.recorded.lock().unwrap();
        recorded.push(Recorded {
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: parts.headers,
            body,
            at: Instant::now(),
        });
        state.count.send_replace(recorded.len());
    }

    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }

    let body = match reply.body {
        ReplyBody::Text(text) => Full::new(text).boxed_unsync(),
        ReplyBody::Filler(total) => filler(total, state.clone()).boxed_unsync(),
    };
    let mut response = hyper::Response::new(body);
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap();
    for (name, value) in reply.headers {
        response.headers_mut().append(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

/// A streamed body of `total` bytes of `x`, counting each chunk as it is produced.
fn filler(
    total: usize,
    state: Arc<State>,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
    const CHUNK: usize = 64 * 1024;
    let stream = futures_util::stream::unfold((total, state), |(left, state)| async move {
        if left == 0 {
            return None;
        }
        let size = left.min(CHUNK);
        state.filler_written.fetch_add(size, Ordering::SeqCst);
        let frame = Frame::data(Bytes::from(vec![b'x'; size]));
        Some((Ok(frame), (left - size, state)))
    });
    StreamBody::new(stream)
}
