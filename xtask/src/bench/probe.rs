//! What the bench reads from /proc and from the agent: CPU time and peak
//! RSS of a process, the run time of its BPF programs (bpf_stats, from the
//! program fds' fdinfo, so other agents loaded at the same time do not
//! count), CPU busy time, and quantiles of the agent's histograms.

use std::{collections::BTreeMap, fs};

use anyhow::{Context as _, Result};

/// Clock ticks per second of /proc/PID/stat (USER_HZ, 100 on Linux).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// (utime, stime) of every thread of `pid`, in seconds.
pub fn cpu_split(pid: u32) -> Result<(f64, f64)> {
    cpu_split_in(&format!("/proc/{pid}/stat"))
}

/// (utime, stime) of one thread of this process, in seconds.
pub fn thread_cpu_split(tid: u32) -> Result<(f64, f64)> {
    cpu_split_in(&format!("/proc/self/task/{tid}/stat"))
}

fn cpu_split_in(path: &str) -> Result<(f64, f64)> {
    let stat = fs::read_to_string(path).with_context(|| format!("{path} is gone"))?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat
        .rsplit_once(')')
        .context("bad /proc/PID/stat")?
        .1
        .split_whitespace()
        .collect::<Vec<_>>();
    let field = |n: usize| -> Result<f64> {
        Ok(rest
            .get(n - 3)
            .context("short /proc/PID/stat")?
            .parse::<f64>()?)
    };
    let hz = ticks_per_second();
    Ok((field(14)? / hz, field(15)? / hz))
}

/// Voluntary context switches of every thread of `pid` so far: each is a
/// sleep, so each next run is a wakeup (of the threads alive now).
pub fn wakeups(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| voluntary_switches(&t.path().join("status")))
        .sum()
}

/// Voluntary context switches of one thread of this process.
pub fn thread_wakeups(tid: u32) -> u64 {
    voluntary_switches(std::path::Path::new(&format!(
        "/proc/self/task/{tid}/status"
    )))
    .unwrap_or(0)
}

fn voluntary_switches(status: &std::path::Path) -> Option<u64> {
    fs::read_to_string(status)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// CPU time the kernel charges a thread for one wakeup from idle on `cpu`:
/// a thread pinned there sleeps 1 ms `rounds` times and reads its own CPU
/// time (the sleep loop itself costs well under a microsecond). On a
/// virtual machine this is mostly the exit to the hypervisor and back.
pub fn wakeup_cost_us(cpu: usize, rounds: u32) -> Result<f64> {
    std::thread::spawn(move || -> Result<f64> {
        // SAFETY: a local cpu_set_t and rusage; plain syscalls.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
            let cpu_time = || {
                let mut usage: libc::rusage = std::mem::zeroed();
                libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
                let t = |tv: libc::timeval| tv.tv_sec as f64 * 1e6 + tv.tv_usec as f64;
                t(usage.ru_utime) + t(usage.ru_stime)
            };
            let before = cpu_time();
            for _ in 0..rounds {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok((cpu_time() - before) / rounds as f64)
        }
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the calibration thread panicked"))?
}

/// Threads that wake every millisecond on the given CPUs until dropped.
///
/// This VM serves the wakeup of a halted vCPU slowly unless the CPU wakes
/// regularly: a process sleeping 1 ms in a loop on v1's CPU raised nginx
/// alone from about 77k to 118k requests/s. The agent wakes every 1 ms
/// itself, so without this the baseline would be the only mode without
/// such a ticker, and lose to capture-only. With it, every mode runs under
/// the same idle behaviour and the comparison measures the agent.
pub struct KeepAwake {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl KeepAwake {
    pub fn start(cpus: &[usize]) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = cpus
            .iter()
            .map(|&cpu| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    // SAFETY: a local cpu_set_t; plain syscalls.
                    unsafe {
                        let mut set: libc::cpu_set_t = std::mem::zeroed();
                        libc::CPU_SET(cpu, &mut set);
                        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
                        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
                    }
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for KeepAwake {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Peak resident set (VmHWM) of `pid`, in bytes.
pub fn peak_rss(pid: u32) -> Result<u64> {
    Ok(mirror_testkit::process::peak_rss_kib(pid)? * 1024)
}

/// bpf_stats of the programs a process holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpfStats {
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

impl BpfStats {
    pub fn since(self, before: BpfStats) -> BpfStats {
        BpfStats {
            run_time_ns: self.run_time_ns.saturating_sub(before.run_time_ns),
            run_cnt: self.run_cnt.saturating_sub(before.run_cnt),
        }
    }
}

/// Sums run_time_ns and run_cnt over the distinct BPF programs `pid` has
/// open. A tail-called program's time is in its caller's figures (its own
/// stay at zero), so this is the classifier with its copier.
pub fn bpf_stats(pid: u32) -> Result<BpfStats> {
    bpf_stats_of(pid, None)
}

/// [`bpf_stats`] of the programs among `only` (all with `None`).
pub fn bpf_stats_of(pid: u32, only: Option<&[u64]>) -> Result<BpfStats> {
    let mut seen = BTreeMap::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let Ok(text) = fs::read_to_string(entry?.path()) else {
            continue;
        };
        let field = |name: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        if let (Some(id), Some(time), Some(cnt)) =
            (field("prog_id:"), field("run_time_ns:"), field("run_cnt:"))
            && only.is_none_or(|ids| ids.contains(&id))
        {
            seen.insert(id, (time, cnt));
        }
    }
    Ok(seen
        .values()
        .fold(BpfStats::default(), |s, (t, c)| BpfStats {
            run_time_ns: s.run_time_ns + t,
            run_cnt: s.run_cnt + c,
        }))
}

/// The ids of the egress programs (`mirror_egress`: v1's responses) among
/// the BPF programs `pid` holds, by the names `bpftool prog show` gives;
/// none if bpftool fails. (`bpftool net show` does not list TCX links
/// before bpftool 7.3, so the attachment itself is not asked.)
pub fn egress_programs(pid: u32) -> Vec<u64> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut ids: Vec<u64> = entries
        .filter_map(|entry| fs::read_to_string(entry.ok()?.path()).ok())
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.retain(|id| {
        std::process::Command::new("bpftool")
            .args(["-j", "prog", "show", "id", &id.to_string()])
            .output()
            .ok()
            .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
            .is_some_and(|prog| prog["name"] == "mirror_egress")
    });
    ids
}

/// Busy and total jiffies per CPU (/proc/stat).
#[derive(Clone, Debug, Default)]
pub struct CpuTimes(Vec<CpuTicks>);

/// One CPU's line of /proc/stat, in ticks.
#[derive(Clone, Copy, Debug, Default)]
struct CpuTicks {
    busy: u64,
    total: u64,
    /// Of `busy`, softirq work (a veth's receive side, the capture
    /// program, TCP).
    softirq: u64,
}

impl CpuTimes {
    pub fn now() -> Self {
        let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
        CpuTimes(
            stat.lines()
                .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                .map(|l| {
                    let v: Vec<u64> = l
                        .split_whitespace()
                        .skip(1)
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    let total: u64 = v.iter().take(8).sum();
                    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                    CpuTicks {
                        busy: total - idle,
                        total,
                        softirq: v.get(6).copied().unwrap_or(0),
                    }
                })
                .collect(),
        )
    }

    /// Busy share of each CPU since `before`, in percent.
    pub fn busy_since(&self, before: &CpuTimes) -> Vec<f64> {
        self.share_since(before, |t| t.busy)
    }

    /// Share of each CPU spent in softirq since `before`, in percent.
    pub fn softirq_since(&self, before: &CpuTimes) -> Vec<f64> {
        self.share_since(before, |t| t.softirq)
    }

    fn share_since(&self, before: &CpuTimes, part: impl Fn(&CpuTicks) -> u64) -> Vec<f64> {
        self.0
            .iter()
            .zip(&before.0)
            .map(|(now, then)| {
                let t = now.total.saturating_sub(then.total).max(1) as f64;
                100.0 * part(now).saturating_sub(part(then)) as f64 / t
            })
            .collect()
    }
}

/// CPU seconds (user + system) of each thread of `pid` so far, by thread
/// name (threads of one name summed): which of the agent's threads is
/// full, the capture loop's or the comparison's.
pub fn threads_cpu(pid: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = fs::read_to_string(path.join("comm")).unwrap_or_default();
        if let Ok((user, system)) = cpu_split_in(&path.join("stat").display().to_string()) {
            *out.entry(name.trim().to_owned()).or_default() += user + system;
        }
    }
    out
}

/// A quantile of a cumulative Prometheus histogram (`(le, count)` sorted),
/// interpolated linearly inside its bucket as Prometheus does.
pub fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let within = (rank - lower.1) / (count - lower.1).max(1e-9);
            return Some(lower.0 + (le - lower.0) * within);
        }
        lower = (le, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_a_bucket() {
        let b = [(0.001, 50.0), (0.002, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(histogram_quantile(&b, 0.5), Some(0.001));
        let p75 = histogram_quantile(&b, 0.75).unwrap();
        assert!((p75 - 0.0015).abs() < 1e-9);
        assert_eq!(histogram_quantile(&[(f64::INFINITY, 0.0)], 0.5), None);
    }
}
