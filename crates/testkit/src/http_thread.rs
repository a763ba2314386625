//! [`HttpThread`]: an axum app served on a free port of `127.0.0.1` from a thread of its own,
//! stopped when dropped — how the HTTP test doubles run next to synchronous tests.

use std::future::IntoFuture;
use tokio::sync::oneshot;

/// A running server; dropping it stops the server and joins its thread.
pub struct HttpThread {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpThread {
    /// Serves `app` from a thread named `name`.
    pub fn start(name: &str, app: axum::Router) -> HttpThread {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking socket");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("the bound address")
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let label = name.to_string();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    // Dropping the server (and then the runtime) ends every connection at once.
                    tokio::select! {
                        result = axum::serve(listener, app).into_future() => {
                            if let Err(e) = result {
                                tracing::warn!(error = %e, "{label} stopped with an error");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .expect("a thread for a test server");
        HttpThread {
            url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for HttpThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The server may have stopped already; nothing is left to stop then.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panicked server thread has already reported itself to the test.
            let _ = thread.join();
        }
    }
}
