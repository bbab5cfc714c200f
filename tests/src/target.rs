//! Scrape targets for the tests: an axum router served on loopback from a thread of its own, so
//! a target keeps answering while the test's own runtime blocks or is busy.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;

/// The text format's content type, what most targets answer with.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Serves the router `make` builds (on the serving thread) at a fresh loopback port; returns its
/// address once it listens.
pub fn serve_router(make: impl FnOnce() -> Router + Send + 'static) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a loopback port");
            tx.send(listener.local_addr().expect("a bound address"))
                .expect("the test waits for the address");
            axum::serve(listener, make()).await.expect("serve");
        });
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the target listens within 5 s")
}

/// A `/metrics` page the test can change between scrapes, answered with `content_type`; returns
/// the page's URL.
pub fn serve_page(page: Arc<Mutex<String>>, content_type: &'static str) -> String {
    let addr = serve_router(move || {
        Router::new().route(
            "/metrics",
            get(move || {
                let text = page.lock().expect("page lock").clone();
                async move { ([("content-type", content_type)], text) }
            }),
        )
    });
    format!("http://{addr}/metrics")
}
