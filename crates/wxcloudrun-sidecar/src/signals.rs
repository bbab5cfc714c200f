//! The signals the sidecar listens to: SIGTERM and SIGINT end it, SIGCHLD says the app may have
//! exited, and SIGHUP, SIGUSR1, SIGUSR2 and SIGQUIT are passed on to the app. Installed before the
//! app exists so that none is missed; the main loop (`run`) and the shutdown both read them.

use std::future::Future;

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// Signals passed straight on to the app. SIGTERM and SIGINT start the shutdown first.
const FORWARDED: [(SignalKind, Signal); 4] = [
    (SignalKind::hangup(), Signal::SIGHUP),
    (SignalKind::user_defined1(), Signal::SIGUSR1),
    (SignalKind::user_defined2(), Signal::SIGUSR2),
    (SignalKind::quit(), Signal::SIGQUIT),
];

/// The signals the sidecar listens to, installed before the app exists so that none is missed.
#[derive(Debug)]
pub(crate) struct Signals {
    sigterm: tokio::signal::unix::Signal,
    sigint: tokio::signal::unix::Signal,
    sigchld: tokio::signal::unix::Signal,
    forwarded: mpsc::UnboundedReceiver<Signal>,
}

/// A signal that arrived.
pub(crate) enum Arrived {
    /// SIGTERM or SIGINT: the shutdown starts.
    Stop(Signal),
    /// A signal for the app.
    Forward(Signal),
    /// SIGCHLD: something exited.
    ChildExited,
}

impl Signals {
    pub(crate) fn install() -> std::io::Result<Signals> {
        let (forward_tx, forwarded) = mpsc::unbounded_channel();
        for (kind, to_forward) in FORWARDED {
            match signal(kind) {
                Ok(mut stream) => {
                    let forward_tx = forward_tx.clone();
                    tokio::spawn(async move {
                        while stream.recv().await.is_some() && forward_tx.send(to_forward).is_ok() {
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, signal = %to_forward, "signal will not be forwarded")
                }
            }
        }
        Ok(Signals {
            sigterm: signal(SignalKind::terminate())?,
            sigint: signal(SignalKind::interrupt())?,
            sigchld: signal(SignalKind::child())?,
            forwarded,
        })
    }

    /// The next signal (cancel-safe: nothing is lost when another branch wins a `select!`).
    pub(crate) async fn next(&mut self) -> Arrived {
        tokio::select! {
            _ = self.sigterm.recv() => Arrived::Stop(Signal::SIGTERM),
            _ = self.sigint.recv() => Arrived::Stop(Signal::SIGINT),
            Some(sig) = self.forwarded.recv() => Arrived::Forward(sig),
            _ = self.sigchld.recv() => Arrived::ChildExited,
        }
    }

    /// Runs one step of the shutdown. Another SIGTERM or SIGINT meanwhile changes nothing: the
    /// budget counts from the first; it is only logged.
    pub(crate) async fn during<F: Future>(&mut self, step: F) -> F::Output {
        let mut step = std::pin::pin!(step);
        loop {
            tokio::select! {
                output = &mut step => return output,
                arrived = self.next() => if let Arrived::Stop(signal) = arrived {
                    tracing::info!(%signal, "already shutting down; the budget counts from the first signal");
                },
            }
        }
    }
}
