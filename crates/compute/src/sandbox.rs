//! Confinement of an environment's process: its own process group (so a timeout kills the
//! function and everything it started), death with the server (so a `kill -9` of tsumiki
//! leaves no orphans), and AWS's per-environment limits as rlimits (open files 1,024, no
//! file larger than the ephemeral storage, no core dumps). Memory is watched from outside
//! (see `env.rs`): an address-space rlimit would stop Node.js, which reserves far more
//! virtual memory than it uses.
//!
//! One of the two places in tsumiki with `unsafe` (the other is `spawn.rs`, which starts
//! Lambda environments without `fork`): `pre_exec` is the only way to run code between fork
//! and exec in `std`, and these calls must happen there.
#![allow(unsafe_code)]

/// Open files per environment (AWS: 1,024 file descriptors).
const MAX_OPEN_FILES: u64 = 1024;

/// The rlimits of an environment or a run: what [`crate::spawn`] and [`confine`] set.
pub(crate) fn limits(ephemeral_storage_mb: u32) -> [(nix::libc::__rlimit_resource_t, u64); 3] {
    let max_file = u64::from(ephemeral_storage_mb) * 1024 * 1024;
    [
        (nix::libc::RLIMIT_NOFILE, MAX_OPEN_FILES),
        (nix::libc::RLIMIT_FSIZE, max_file),
        (nix::libc::RLIMIT_CORE, 0),
    ]
}

pub(crate) fn confine(cmd: &mut tokio::process::Command, ephemeral_storage_mb: u32) {
    cmd.process_group(0);
    let limits = limits(ephemeral_storage_mb);
    // SAFETY: the closure runs in the child between fork and exec. It only makes raw system
    // calls (prctl, setrlimit) that are async-signal-safe, and neither allocates nor takes
    // locks, so it cannot deadlock on state copied from other threads of the parent.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            for (resource, value) in limits {
                let limit = nix::libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if nix::libc::setrlimit(resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Confines a run-to-completion process (a Glue job run, an ECS container) as [`confine`]
/// does, and lowers its scheduling priority by `nice`, so CPU-bound runs share the machine
/// without starving the server that answers their API calls.
pub(crate) fn confine_run(cmd: &mut tokio::process::Command, storage_mb: u32, nice: i32) {
    confine(cmd, storage_mb);
    // SAFETY: as in `confine`: one raw, async-signal-safe system call between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // `setpriority` may fail without privileges only when raising priority; a failure
            // leaves the default priority, which is safe.
            let _ = nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, nice);
            Ok(())
        });
    }
}

/// Kills an environment's whole process group.
pub(crate) fn kill_group(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Whether any process of the group `pgid` is still alive (not a zombie). A killed process
/// takes a moment to die; a run is reported ended only once its whole group is gone.
pub(crate) fn group_alive(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
        pgrp == Some(pgid) && state != Some("Z") && state != Some("X")
    })
}

/// Asks an environment's whole process group to stop (SIGTERM), as a container runtime does
/// before its grace period ends in SIGKILL.
pub(crate) fn terminate_group(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
}

/// Resident memory of a process now and at its peak, in bytes (`VmRSS`, `VmHWM`).
pub(crate) fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
