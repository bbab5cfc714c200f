//! What the process itself reports: the `process_*` collector and the cold start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use prometheus::{Gauge, Registry};

use crate::config::ConfigError;

/// Registers the `process_*` metrics (CPU, memory, file descriptors, start time) on Linux.
#[cfg(target_os = "linux")]
pub(super) fn register_process_metrics(registry: &Registry) -> Result<(), ConfigError> {
    let collector = prometheus::process_collector::ProcessCollector::for_self();
    match registry.register(Box::new(collector)) {
        // The global registry comes with one already.
        Ok(()) | Err(prometheus::Error::AlreadyReg) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Registers nothing: the `process_*` collector exists on Linux only.
#[cfg(not(target_os = "linux"))]
pub(super) fn register_process_metrics(_: &Registry) -> Result<(), ConfigError> {
    Ok(())
}

/// The cold start: the first request the process serves. It is claimed once, when that request
/// arrives (its span says `wx.cold_start`), and measured once, when its response ends
/// (`wxcloudrun_cold_start_seconds`).
pub(super) struct ColdStart {
    seconds: Gauge,
    claimed: AtomicBool,
    process_start: SystemTime,
}

impl ColdStart {
    /// The cold start of this process, measured into `seconds` from `process_start` (by
    /// default the kernel's start time of the process).
    pub(super) fn new(seconds: Gauge, process_start: Option<SystemTime>) -> Self {
        ColdStart {
            seconds,
            claimed: AtomicBool::new(false),
            process_start: process_start.unwrap_or_else(process_start_time),
        }
    }

    /// Whether the request arriving now is the process's first.
    pub(super) fn claim(&self) -> bool {
        // A load first: after the first request this is a plain read, not a write to a shared line.
        !self.claimed.load(Ordering::Relaxed) && !self.claimed.swap(true, Ordering::Relaxed)
    }

    /// Records the end of the first request's response.
    pub(super) fn record(&self) {
        let since_start = SystemTime::now()
            .duration_since(self.process_start)
            .unwrap_or_default();
        self.seconds.set(since_start.as_secs_f64());
    }
}

/// When the process started: from the kernel on Linux, else now.
fn process_start_time() -> SystemTime {
    #[cfg(target_os = "linux")]
    {
        let from_proc = || -> Option<SystemTime> {
            let ticks = procfs::process::Process::myself()
                .ok()?
                .stat()
                .ok()?
                .starttime;
            let boot = procfs::boot_time_secs().ok()?;
            let secs = boot as f64 + ticks as f64 / procfs::ticks_per_second() as f64;
            SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs_f64(secs))
        };
        if let Some(start) = from_proc() {
            return start;
        }
    }
    SystemTime::now()
}
