//! Servers in child processes, and the runtime both sides use.
//!
//! The parent re-executes its own binary as `mw-bench serve <target> --addr 127.0.0.1:0`.
//! The child binds, prints `listening on <addr>` as its first stdout line once it accepts
//! connections, and serves until it is killed. Client and server therefore never share a
//! runtime or an allocator: each side's CPU and memory is its own, as for a peer's server
//! in its own process.

use std::io::{self, BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The prefix of the line a child server prints once it is ready.
pub const READY_PREFIX: &str = "listening on ";

/// The runtime used by bench clients and child servers: tokio multi-thread, 2 workers.
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Announces readiness from a child server (call once the listener is bound).
pub fn announce(addr: &impl std::fmt::Display) {
    use std::io::Write;
    let mut out = io::stdout().lock();
    // A parent that went away is not our problem: it will kill us anyway.
    let _ = writeln!(out, "{READY_PREFIX}{addr}");
    let _ = out.flush();
}

/// A server running in a child process; killed and reaped on [`ChildServer::stop`] or drop.
#[derive(Debug)]
pub struct ChildServer {
    child: Option<Child>,
    addr: String,
}

impl ChildServer {
    /// Starts `current_exe serve <target> --addr 127.0.0.1:0` and waits for its ready line.
    pub fn spawn(target: &str) -> io::Result<ChildServer> {
        // /proc/self/exe is this very binary even if a build in the shared target directory
        // has replaced the file since we started (current_exe() would name the new one).
        let proc_exe = std::path::Path::new("/proc/self/exe");
        let exe = if proc_exe.exists() {
            proc_exe.to_path_buf()
        } else {
            std::env::current_exe()?
        };
        let mut child = Command::new(exe)
            .args(["serve", target, "--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout was piped");
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let mut server = ChildServer {
            child: Some(child),
            addr: String::new(),
        };
        match read {
            Ok(n) if n > 0 => {}
            Ok(_) => {
                let status = server.stop();
                return Err(io::Error::other(format!(
                    "server {target:?} exited before it was ready ({status:?})"
                )));
            }
            Err(e) => return Err(e),
        }
        match line.trim_end().strip_prefix(READY_PREFIX) {
            Some(addr) => server.addr = addr.to_string(),
            None => {
                return Err(io::Error::other(format!(
                    "server {target:?} printed {line:?} instead of \"{READY_PREFIX}<addr>\""
                )))
            }
        }
        Ok(server)
    }

    /// The child's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The address the child listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Kills the child (by its handle) and waits for it.
    pub fn stop(&mut self) -> io::Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else {
            return Err(io::Error::other("already stopped"));
        };
        // Fails only if it already exited, which `wait` then reports.
        let _ = child.kill();
        child.wait()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}
