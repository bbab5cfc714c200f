//! The machine: CPU model, usable cores, pinning a thread to one, and per-thread CPU time.

use std::time::Duration;

/// The CPU model from `/proc/cpuinfo`, when there is one.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Logical CPUs in the machine (`/proc/cpuinfo`'s processors, else what the process may use).
pub fn cpu_count() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .map(|text| {
            text.lines()
                .filter(|line| line.starts_with("processor"))
                .count()
        })
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// The CPUs this process may run on, in order.
#[cfg(target_os = "linux")]
pub fn usable_cpus() -> Vec<usize> {
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(not(target_os = "linux"))]
pub fn usable_cpus() -> Vec<usize> {
    Vec::new()
}

/// Pins the calling thread to `cpu`. Threads it spawns afterwards inherit the pinning.
pub fn pin_current_thread(cpu: usize) -> Result<(), String> {
    set_current_thread_cpus(&[cpu])
}

/// Lets the calling thread run on `cpus` only. Threads it spawns afterwards inherit the set.
#[cfg(target_os = "linux")]
pub fn set_current_thread_cpus(cpus: &[usize]) -> Result<(), String> {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu).map_err(|err| format!("CPU {cpu}: {err}"))?;
    }
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|err| format!("CPUs {cpus:?}: {err}"))
}

#[cfg(not(target_os = "linux"))]
pub fn set_current_thread_cpus(cpus: &[usize]) -> Result<(), String> {
    Err(format!(
        "pinning to CPUs {cpus:?} is only implemented on Linux"
    ))
}

/// The kernel id of the calling thread, for [`thread_cpu_time`].
#[cfg(target_os = "linux")]
pub fn current_thread_id() -> Option<i32> {
    Some(nix::unistd::gettid().as_raw())
}

#[cfg(not(target_os = "linux"))]
pub fn current_thread_id() -> Option<i32> {
    None
}

/// CPU time a thread of this process has used so far (`/proc/self/task/<tid>/schedstat`).
pub fn thread_cpu_time(tid: i32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let nanos = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// CPU time the whole process has used so far, all threads.
#[cfg(target_os = "linux")]
pub fn process_cpu_time() -> Option<Duration> {
    use nix::time::{ClockId, clock_gettime};
    let spec = clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID).ok()?;
    Some(Duration::from(spec))
}

#[cfg(not(target_os = "linux"))]
pub fn process_cpu_time() -> Option<Duration> {
    None
}

/// Busy and total time of one CPU so far, in clock ticks (`/proc/stat`); busy excludes idle and
/// iowait and includes every process on that CPU, not only this one.
pub fn cpu_ticks(cpu: usize) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let label = format!("cpu{cpu}");
    let line = text
        .lines()
        .find(|line| line.split_whitespace().next() == Some(label.as_str()))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// User and system CPU time a thread of this process has used so far
/// (`/proc/self/task/<tid>/stat`, in clock ticks of 10 ms).
pub fn thread_user_system_time(tid: i32) -> Option<(Duration, Duration)> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let tick = Duration::from_millis(10);
    Some((tick * user as u32, tick * system as u32))
}
