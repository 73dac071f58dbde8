//! How busy the rest of the machine was while a benchmark ran.
//!
//! The benchmark machine is shared (2 vCPUs): a compiler running beside a benchmark both
//! steals CPU from throughput runs and, by keeping the vCPUs from idling, makes sequential
//! latency look better than the idle floor. Reporting the share of CPU that other processes
//! used makes such runs recognisable.

use std::fs;

/// CPU time counters at one instant (clock ticks).
#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    busy: u64,
    total: u64,
    own: u64,
}

impl CpuSnapshot {
    /// Reads `/proc/stat` and this process's (and its reaped children's) CPU time.
    /// `None` where /proc is not available.
    pub fn now() -> Option<CpuSnapshot> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        if cpu.len() < 8 {
            return None;
        }
        // user nice system idle iowait irq softirq steal. Interrupt time is left out of
        // "busy": loopback TCP processing of our own traffic is accounted there.
        let busy = cpu[0] + cpu[1] + cpu[2];
        let total: u64 = cpu[..8].iter().sum();
        let me = fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name; utime is field 14 overall.
        let rest = &me[me.rfind(')')? + 2..];
        let f: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() < 4 {
            return None;
        }
        Some(CpuSnapshot {
            busy,
            total,
            own: f.iter().sum(),
        })
    }

    /// Percentage of all CPU capacity used by processes other than this one and its
    /// reaped children between `self` and `later`.
    pub fn others_percent(&self, later: &CpuSnapshot) -> f64 {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        let busy = later.busy.saturating_sub(self.busy) as f64;
        let own = later.own.saturating_sub(self.own) as f64;
        ((busy - own).max(0.0) / total * 100.0).min(100.0)
    }
}

/// The 1-minute load average, if readable.
pub fn loadavg() -> Option<String> {
    let s = fs::read_to_string("/proc/loadavg").ok()?;
    Some(s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Restricts every thread of process `pid` (0: this process) to the CPUs in `cpus`, or lets
/// them run anywhere again with `None`. Threads started later inherit the mask of the
/// thread that starts them.
///
/// # Errors
/// If /proc cannot be read or the kernel refuses the mask.
pub fn pin_process(pid: u32, cpus: Option<&[usize]>) -> std::io::Result<()> {
    let dir = if pid == 0 {
        "/proc/self/task".to_string()
    } else {
        format!("/proc/{pid}/task")
    };
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let all: Vec<usize> = (0..cpu_count()).collect();
    for &c in cpus.unwrap_or(&all) {
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    for entry in fs::read_dir(dir)? {
        let Some(tid) = entry?
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        let rc =
            unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            // A thread that exited since the directory was read is not an error.
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// CPUs online. Unlike `available_parallelism`, not narrowed by this thread's affinity.
pub fn cpu_count() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}
