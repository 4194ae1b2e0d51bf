//! Starting an environment's process without `fork`.
//!
//! `std`'s `Command` forks when a `pre_exec` hook is set, and `fork` copies the page tables of
//! the whole server: with a server of 100 MB resident, a function's cold start spent 7 ms
//! there (5 ms against 12 ms for a `provided` function on the CI VM). Without hooks `std` uses
//! `posix_spawn`, which cannot set a parent-death signal or resource limits. So this module
//! does what glibc's `posix_spawn` does, plus those calls: `clone(CLONE_VM | CLONE_VFORK)` on a
//! small stack of its own, with every signal blocked; the child resets signal handlers, makes
//! its own process group, sets `PR_SET_PDEATHSIG` and the rlimits, wires stdio, changes
//! directory and `execve`s. The parent sleeps until that `execve` (or `_exit`), and waits for
//! the process's end through a pidfd.
//!
//! The child shares the server's memory until it executes, so it only reads what the parent
//! prepared and makes raw, async-signal-safe calls: no allocation, no locks, no panics.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

use nix::libc;

/// The child's stack. Its calls are a handful of system-call wrappers.
const STACK_BYTES: usize = 64 * 1024;

/// What a confined process gets.
pub(crate) struct Confined<'a> {
    pub program: &'a Path,
    pub args: &'a [OsString],
    /// The whole environment (nothing is inherited).
    pub env: &'a BTreeMap<OsString, OsString>,
    pub cwd: &'a Path,
    /// Both stdout and stderr; stdin is `/dev/null`.
    pub output: &'a OwnedFd,
    /// `(resource, limit)`, set as both soft and hard limit.
    pub limits: &'a [(libc::__rlimit_resource_t, u64)],
}

/// A started process, waited for through its pidfd.
pub(crate) struct Spawned {
    pid: u32,
    pidfd: Option<tokio::io::unix::AsyncFd<OwnedFd>>,
}

struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdin: libc::c_int,
    output: libc::c_int,
    limits: *const (libc::__rlimit_resource_t, u64),
    limit_count: usize,
    /// The errno of the step that failed, 0 when `execve` succeeded.
    error: libc::c_int,
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte"))
}

/// Starts `what` confined: own process group, SIGKILL when the spawning thread's process
/// dies, the given rlimits.
pub(crate) fn spawn(what: &Confined<'_>) -> io::Result<Spawned> {
    let path = cstring(what.program.as_os_str().as_bytes())?;
    let mut argv_owned = vec![path.clone()];
    for a in what.args {
        argv_owned.push(cstring(a.as_bytes())?);
    }
    let envp_owned = what
        .env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let cwd = cstring(what.cwd.as_os_str().as_bytes())?;
    let mut argv: Vec<*const libc::c_char> = argv_owned.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = envp_owned.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let dev_null = std::fs::File::open("/dev/null")?;

    let mut args = ChildArgs {
        path: path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: cwd.as_ptr(),
        stdin: dev_null.as_raw_fd(),
        output: what.output.as_raw_fd(),
        limits: what.limits.as_ptr(),
        limit_count: what.limits.len(),
        error: 0,
    };
    let mut stack = vec![0u8; STACK_BYTES];
    // The stack grows down from its 16-byte-aligned top.
    let top = {
        let end = stack.as_mut_ptr().wrapping_add(STACK_BYTES) as usize;
        (end & !15) as *mut libc::c_void
    };

    // SAFETY: blocking every signal on this thread keeps handlers (which would run on the
    // shared memory) out of the child until it has reset them; the old mask is restored below.
    // `clone` with CLONE_VM | CLONE_VFORK runs `child` on `stack` and suspends this thread
    // until the child executes or exits, so `args`, the strings it points to and `stack`
    // outlive the child's use of them; the child only reads them and writes `args.error`.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw mut args).cast(),
        );
        let spawn_errno = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(spawn_errno);
        }
        pid
    };
    drop(stack);
    if args.error != 0 {
        // SAFETY: reaps the child that failed before executing; `status` is a plain int.
        unsafe {
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
        return Err(io::Error::from_raw_os_error(args.error));
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let pidfd = if fd >= 0 {
        // SAFETY: `fd` is a descriptor pidfd_open just returned; nothing else owns it. The
        // `OwnedFd` moves into the `AsyncFd`, so it stays open while registered.
        unsafe {
            let owned = OwnedFd::from_raw_fd(fd as libc::c_int);
            tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE)
                .ok()
        }
    } else {
        None
    };
    Ok(Spawned {
        pid: pid as u32,
        pidfd,
    })
}

/// The child, between `clone` and `execve`: raw calls on prepared data only.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive while the parent is suspended; every
    // call below is an async-signal-safe libc wrapper of one system call.
    unsafe {
        let args = &mut *arg.cast::<ChildArgs>();
        let fail = |args: &mut ChildArgs| -> ! {
            args.error = *libc::__errno_location();
            if args.error == 0 {
                args.error = libc::EINVAL;
            }
            libc::_exit(127)
        };
        // Handlers the server installed must not run here; ignored signals stay ignored
        // across exec, as after fork, except SIGPIPE, which `std` restores for children.
        for sig in 1..=64 {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if old.sa_sigaction != libc::SIG_DFL
                && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            fail(args);
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            fail(args);
        }
        for i in 0..args.limit_count {
            let (resource, value) = *args.limits.add(i);
            let limit = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &limit) != 0 {
                fail(args);
            }
        }
        if libc::dup2(args.stdin, 0) < 0
            || libc::dup2(args.output, 1) < 0
            || libc::dup2(args.output, 2) < 0
        {
            fail(args);
        }
        if libc::chdir(args.cwd) != 0 {
            fail(args);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(args.path, args.argv, args.envp);
        fail(args)
    }
}

impl Spawned {
    pub(crate) fn id(&self) -> u32 {
        self.pid
    }

    /// Waits for the process to end and reaps it.
    pub(crate) async fn wait(self) -> io::Result<ExitStatus> {
        let pid = self.pid as libc::pid_t;
        if let Some(fd) = &self.pidfd {
            // A pidfd turns readable once its process has ended.
            let mut ready = fd.readable().await?;
            ready.retain_ready();
        }
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child with a plain int for the status.
            let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if got == pid {
                return Ok(ExitStatus::from_raw(status));
            }
            if got < 0 {
                return Err(io::Error::last_os_error());
            }
            // Without a pidfd (kernels before 5.3) poll.
            tsumiki_core::Clock::pause_real(std::time::Duration::from_millis(10)).await;
        }
    }
}
