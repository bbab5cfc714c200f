//! Wrapper mode: run the app as a child, pass signals on, reap zombies, and report the child's exit
//! the way a shell does (its code, or 128 + the signal that killed it).
//!
//! As PID 1 the sidecar inherits every orphan of the container. Elsewhere (under `sh -c`, or a
//! platform init) it makes itself the "child subreaper", so orphans of the app are its to reap
//! either way. The child is reaped with `waitpid(-1)` here rather than through `tokio::process`,
//! which would race with that for the child's status.

use std::ffi::OsString;
use std::io;
use std::time::SystemTime;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// The app, running.
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    started: SystemTime,
    reap_all: bool,
    exit_code: Option<i32>,
}

impl Child {
    /// Starts `command` with the sidecar's environment and standard streams. With `reap_orphans`
    /// the sidecar becomes the subreaper of the app's orphans and [`try_wait`](Self::try_wait)
    /// reaps them too (it then owns every child of this process).
    pub fn spawn(command: &[OsString], reap_orphans: bool) -> io::Result<Child> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command given"))?;
        #[cfg(target_os = "linux")]
        if reap_orphans && let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!(error = %err, "cannot become the child subreaper; orphans go to init");
        }
        let started = SystemTime::now();
        let child = std::process::Command::new(program).args(args).spawn()?;
        let pid = i32::try_from(child.id())
            .map(Pid::from_raw)
            .map_err(|_| io::Error::other("child pid out of range"))?;
        // Dropping `std::process::Child` neither waits nor kills: reaping is ours.
        drop(child);
        Ok(Child {
            pid,
            started,
            reap_all: reap_orphans,
            exit_code: None,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// When the child was started: the start of every counter it exposes.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// Passes `signal` on to the child. A child that is already gone is not an error.
    pub fn signal(&self, signal: Signal) {
        if self.exit_code.is_some() {
            return;
        }
        match kill(self.pid, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(err) => tracing::warn!(%signal, error = %err, "could not signal the app"),
        }
    }

    /// Reaps whatever has exited without blocking; returns the child's exit code once it has
    /// exited. As PID 1, orphans that were re-parented to us are reaped too.
    pub fn try_wait(&mut self) -> Option<i32> {
        if self.exit_code.is_some() {
            return self.exit_code;
        }
        let target = if self.reap_all { None } else { Some(self.pid) };
        loop {
            match waitpid(target, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.pid => {
                    self.exit_code = Some(code);
                    return self.exit_code;
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == self.pid => {
                    self.exit_code = Some(128 + signal as i32);
                    return self.exit_code;
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return None,
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    tracing::warn!(error = %err, "waitpid failed");
                    return None;
                }
                // An orphan reaped (as PID 1), or a stop/continue report: look again.
                Ok(_) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn wait(child: &mut Child) -> i32 {
        for _ in 0..500 {
            if let Some(code) = child.try_wait() {
                return code;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("child did not exit within 5 s");
    }

    fn sh(script: &str) -> Vec<OsString> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn exit_codes_propagate() {
        assert_eq!(wait(&mut Child::spawn(&sh("exit 0"), false).unwrap()), 0);
        assert_eq!(wait(&mut Child::spawn(&sh("exit 3"), false).unwrap()), 3);
    }

    #[test]
    fn death_by_signal_is_128_plus_the_signal() {
        let mut child = Child::spawn(&sh("sleep 30"), false).unwrap();
        child.signal(Signal::SIGKILL);
        assert_eq!(wait(&mut child), 128 + 9);
        // Signalling an exited child is harmless.
        child.signal(Signal::SIGTERM);
    }

    #[test]
    fn missing_program_is_an_error() {
        assert!(Child::spawn(&["/nonexistent/program".into()], false).is_err());
        assert!(Child::spawn(&[], false).is_err());
    }
}
