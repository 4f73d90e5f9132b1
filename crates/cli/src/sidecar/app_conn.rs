//! The sidecar's connections to the app: loopback TCP (`http://HOST:PORT`)
//! or a Unix socket (`unix:/PATH`), behind one connector for hyper's
//! pooled client.
//!
//! A Unix socket skips the TCP stack on both sides of the app hop (no
//! segments, acknowledgements or loopback routing per message), which is
//! most of what the hop costs for small answers.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

/// Longest wait for a connection to the app.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to the app: by TCP to the request's authority, or to one Unix
/// socket whatever the request names.
#[derive(Clone)]
pub(crate) struct AppConnector {
    tcp: HttpConnector,
    unix: Option<Arc<PathBuf>>,
}

impl AppConnector {
    /// By TCP (`unix` is `None`) or to the Unix socket at `unix`.
    pub(crate) fn new(unix: Option<PathBuf>) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        Self {
            tcp,
            unix: unix.map(Arc::new),
        }
    }
}

/// A connection to the app.
pub(crate) enum AppStream {
    Tcp(TokioIo<TcpStream>),
    Unix(TokioIo<UnixStream>),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for AppConnector {
    type Response = AppStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<AppStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self.unix {
            Some(_) => Poll::Ready(Ok(())),
            None => self.tcp.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        match &self.unix {
            Some(path) => {
                let path = Arc::clone(path);
                Box::pin(async move {
                    let connect = UnixStream::connect(path.as_path());
                    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                        Ok(Ok(s)) => Ok(AppStream::Unix(TokioIo::new(s))),
                        Ok(Err(e)) => Err(e.into()),
                        Err(_) => Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "connecting to the app's Unix socket timed out",
                        )
                        .into()),
                    }
                })
            }
            None => {
                let connecting = self.tcp.call(uri);
                Box::pin(async move { Ok(AppStream::Tcp(connecting.await?)) })
            }
        }
    }
}

impl Connection for AppStream {
    fn connected(&self) -> Connected {
        match self {
            AppStream::Tcp(s) => s.connected(),
            AppStream::Unix(_) => Connected::new(),
        }
    }
}

impl hyper::rt::Read for AppStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AppStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            AppStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for AppStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AppStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            AppStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AppStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            AppStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AppStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            AppStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            AppStream::Tcp(s) => s.is_write_vectored(),
            AppStream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AppStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            AppStream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
}
