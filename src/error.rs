//! The crate's error type: a kind that callers branch on, and a message for the log.

use std::fmt;

/// What went wrong, coarse enough for callers to decide what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// PostgreSQL refused or dropped the connection or a statement.
    Database,
    /// The configuration or a command-line value is unusable.
    Config,
    /// The CKAN database does not look like CKAN, or the side schema is not as expected.
    Schema,
    /// A network or HTTP problem talking to a webhook receiver or a client.
    Http,
    /// A local I/O problem: files, processes, sockets.
    Io,
}

/// The crate's error: a kind plus a human message (never a secret).
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// The cause, printed by `Display` (not exposed as `source()`, so error reports that
    /// walk the chain do not print it twice).
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// The SQLSTATE of a server error.
    code: Option<String>,
}

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            cause: None,
            code: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Box::new(source));
        self
    }

    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether a statement lost a serialization conflict or a deadlock, and may simply
    /// be tried again.
    pub fn is_conflict(&self) -> bool {
        matches!(self.code.as_deref(), Some("40001") | Some("40P01"))
    }

    /// A configuration error naming the bad value.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
            let mut next = cause.source();
            while let Some(inner) = next {
                write!(f, ": {inner}")?;
                next = inner.source();
            }
        }
        Ok(())
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        // A server error says everything in its code and message; other errors (connect,
        // I/O) carry their detail in their causes.
        match err.as_db_error() {
            Some(db) => {
                let mut error = Error::new(
                    ErrorKind::Database,
                    format!("database error {}: {}", db.code().code(), db.message()),
                );
                error.code = Some(db.code().code().to_string());
                error
            }
            None => Error::new(ErrorKind::Database, "database error").with_source(err),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(err) => Error::from(err),
            other => Error::new(ErrorKind::Database, format!("database pool: {other}")),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, "i/o").with_source(err)
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
