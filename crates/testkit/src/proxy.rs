//! A TCP proxy a test can cut: the database "stops" and "starts" under a
//! client that keeps running, while one real server serves every test.
//!
//! [`CutoffProxy::start`] listens on a loopback port and forwards every
//! connection to the target; the client under test is pointed at
//! [`CutoffProxy::addr`]. [`cut`](CutoffProxy::cut) closes the port (new
//! connections are refused) and every connection through it, and returns
//! only once they are closed, so the next call of the client sees a dead
//! database, never a half-closed one. [`restore`](CutoffProxy::restore)
//! listens again on the same port, so the client's configuration (its URL,
//! its pool) does not change across the outage — what recovery has to prove.
//!
//! Connections are forwarded byte for byte (`copy_bidirectional`); the proxy
//! knows nothing of the protocol, so PostgreSQL and MongoDB share it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::{lookup_host, TcpListener, TcpSocket, TcpStream, ToSocketAddrs};
use tokio::task::{JoinHandle, JoinSet};

/// A loopback TCP forwarder to one target that a test can cut off and
/// restore. Dropping it cuts it (without waiting).
#[derive(Debug)]
pub struct CutoffProxy {
    addr: SocketAddr,
    target: Arc<[SocketAddr]>,
    running: Mutex<Option<Running>>,
}

/// The tasks of an open proxy: the accept loop, and one task per forwarded
/// connection (in a set the accept loop adds to).
#[derive(Debug)]
struct Running {
    accept: JoinHandle<()>,
    conns: Arc<Mutex<JoinSet<()>>>,
}

impl CutoffProxy {
    /// Resolves `target` (a `SocketAddr` or `"host:port"`) and starts
    /// forwarding to it from a fresh port on 127.0.0.1. Every address the
    /// name resolves to is tried in turn for each connection, as a client
    /// connecting directly would.
    pub async fn start(target: impl ToSocketAddrs) -> CutoffProxy {
        let target: Arc<[SocketAddr]> = lookup_host(target)
            .await
            .expect("the proxy target resolves")
            .collect();
        assert!(!target.is_empty(), "the proxy target has no address");
        let listener = listen("127.0.0.1:0".parse().expect("a socket address"))
            .expect("the proxy listens on a fresh loopback port");
        let proxy = CutoffProxy {
            addr: listener
                .local_addr()
                .expect("a bound listener has an address"),
            target,
            running: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    /// Where the client under test connects; the same before and after a
    /// cut.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the port and every connection through it; returns once they
    /// are all closed. Cutting a cut proxy does nothing.
    pub async fn cut(&self) {
        let running = self.running().take();
        let Some(Running { accept, conns }) = running else {
            return;
        };
        // Once the accept loop has stopped (and dropped the listener), no
        // connection can be added behind our back.
        accept.abort();
        let _ = accept.await;
        let mut open = std::mem::take(&mut *lock(&conns));
        open.shutdown().await;
    }

    /// Listens again on the same port, as a database that started again.
    ///
    /// The port is free once [`cut`](Self::cut) returns, but it is an
    /// ephemeral one: for a moment some other connection on the machine may
    /// hold it, so the bind is retried for up to five seconds.
    ///
    /// # Panics
    /// If the proxy is not cut, or the port stays taken.
    pub async fn restore(&self) {
        assert!(
            self.running().is_none(),
            "restore() on a proxy that is not cut"
        );
        let mut tries = 0;
        let listener = loop {
            match listen(self.addr) {
                Ok(listener) => break listener,
                Err(e) if tries == 250 => panic!("could not listen on {} again: {e}", self.addr),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        self.serve(listener);
    }

    /// Starts the accept loop on `listener`.
    fn serve(&self, listener: TcpListener) {
        let conns: Arc<Mutex<JoinSet<()>>> = Arc::default();
        let accept = tokio::spawn({
            let (conns, target) = (conns.clone(), self.target.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let target = target.clone();
                    let mut open = lock(&conns);
                    // Forget the connections that already ended.
                    while open.try_join_next().is_some() {}
                    open.spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&target[..]).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
        });
        *self.running() = Some(Running { accept, conns });
    }

    fn running(&self) -> MutexGuard<'_, Option<Running>> {
        lock(&self.running)
    }
}

impl Drop for CutoffProxy {
    /// A proxy outliving its test would keep forwarding on a port the next
    /// test may be given; dropping it aborts every task (not waiting for
    /// them: `drop` cannot).
    fn drop(&mut self) {
        if let Some(Running { accept, conns }) = self.running().take() {
            accept.abort();
            lock(&conns).abort_all();
        }
    }
}

/// A listener on `addr` with `SO_REUSEADDR`, so the port can be taken
/// again right after a cut although its old connections linger in
/// `TIME_WAIT`.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

/// Locks, ignoring poison: a test that panicked while holding the lock
/// has already failed, and the state (a task list) is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An echo server on a fresh loopback port: the "database".
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = conn.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn echoes(conn: &mut TcpStream) -> bool {
        let mut buf = [0u8; 4];
        conn.write_all(b"ping").await.is_ok()
            && conn.read_exact(&mut buf).await.is_ok()
            && &buf == b"ping"
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cut_closes_the_port_and_open_connections_and_restore_reopens_the_same_port() {
        let proxy = CutoffProxy::start(echo_server().await).await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(echoes(&mut open).await, "forwards while up");

        proxy.cut().await;
        let mut buf = [0u8; 1];
        assert!(
            matches!(open.read(&mut buf).await, Ok(0) | Err(_)),
            "an open connection is closed by the cut"
        );
        assert!(
            TcpStream::connect(proxy.addr()).await.is_err(),
            "new connections are refused while cut"
        );
        proxy.cut().await;

        proxy.restore().await;
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(echoes(&mut again).await, "forwards again on the same port");
    }
}
