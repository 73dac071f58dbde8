//! The example programs and the `mw` binary as a user runs them: servers print
//! `listening on <addr>` when ready, clients print their results, `--registry` finds
//! servers by name, SIGTERM shuts a server down cleanly (withdrawing its registration),
//! and bad command lines exit non-zero with a message on stderr.
//!
//! The examples are found next to this test's executable (`target/<profile>/examples/`).
//! Cargo builds them for a plain `cargo test`, but not when test targets are selected
//! (`cargo test --test examples_cli`): then run `cargo build --examples` first. A
//! missing example fails the test with that advice rather than skipping silently.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Upper bound for a program to print a line or to finish.
const LIMIT: Duration = Duration::from_secs(20);

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/examples_cli-<hash> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("examples");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "example {name} is not built at {}: run `cargo build -p mw --examples` (or an \
         unfiltered `cargo test -p mw`) before `cargo test --test examples_cli`",
        path.display()
    );
    path
}

fn mw_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mw"))
}

/// A child process that is killed and reaped when dropped, whatever happened.
struct Proc {
    name: String,
    child: Child,
    /// Lines of stdout; disconnected once the process closed its stdout (exited).
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Proc {
    fn spawn(program: PathBuf, args: &[&str]) -> Proc {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut child = Command::new(&program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Proc {
            name,
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// The next line of stdout, waiting at most [`LIMIT`].
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(LIMIT) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                panic!("{} printed nothing for {LIMIT:?}", self.name)
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                let stderr = self.stderr_text();
                panic!(
                    "{} exited ({status:?}) before printing the expected line; stderr: {stderr}",
                    self.name,
                )
            }
        }
    }

    /// Waits for the `listening on <addr>` line and returns the address.
    fn listening_addr(&mut self) -> String {
        let line = self.line();
        line.strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{}: expected `listening on ADDR`, got {line:?}", self.name))
            .to_string()
    }

    /// Waits (at most [`LIMIT`]) for the process to exit; returns its status, the rest of
    /// its stdout and its stderr.
    fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let mut out = Vec::new();
        loop {
            match self.lines.recv_timeout(LIMIT) {
                Ok(l) => out.push(l),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{} did not exit within {LIMIT:?}; stdout so far: {out:?}",
                        self.name
                    )
                }
            }
        }
        // Stdout is closed: the process has exited or is exiting.
        let status = self.child.wait().expect("wait");
        (status, out, self.stderr_text())
    }

    fn stderr_text(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    /// Sends SIGTERM (as a service manager would).
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client to completion.
fn run(program: PathBuf, args: &[&str]) -> (ExitStatus, Vec<String>, String) {
    Proc::spawn(program, args).finish()
}

/// Runs a client that must succeed; returns its stdout lines.
fn run_ok(program: PathBuf, args: &[&str]) -> Vec<String> {
    let shown = format!("{} {}", program.display(), args.join(" "));
    let (status, out, err) = run(program, args);
    assert!(status.success(), "{shown} failed ({status}); stderr: {err}");
    out
}

/// Runs a command that must fail; returns its stderr.
fn run_fails(program: PathBuf, args: &[&str]) -> String {
    let shown = format!("{} {}", program.display(), args.join(" "));
    let (status, out, err) = run(program, args);
    assert!(
        !status.success(),
        "{shown} succeeded but should have failed; stdout: {out:?}"
    );
    assert!(!err.trim().is_empty(), "{shown} failed without saying why");
    err
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn check_date_output(out: &[String]) {
    assert_eq!(out.len(), 2, "{out:?}");
    let secs: i64 = out[0]
        .strip_prefix("bin_date: ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("expected `bin_date: <secs>`, got {:?}", out[0]));
    assert!(
        (secs - now_secs()).abs() < 60,
        "server time {secs} is not within a minute of now"
    );
    assert_eq!(
        out[1],
        format!("str_date: {}", mw::demo::format_utc(secs)),
        "str_date must be the text of the bin_date value"
    );
}

#[test]
fn date_client_prints_server_time_as_number_and_text() {
    let mut server = Proc::spawn(example("date_server"), &["--addr", "127.0.0.1:0"]);
    let addr = server.listening_addr();
    let out = run_ok(example("date_client"), &["--addr", &addr]);
    check_date_output(&out);
}

#[test]
fn increment_client_prints_value_plus_one() {
    let mut server = Proc::spawn(example("increment_server"), &["--addr", "127.0.0.1:0"]);
    let addr = server.listening_addr();
    let out = run_ok(
        example("increment_client"),
        &["--addr", &addr, "--value", "41"],
    );
    assert_eq!(out, ["42"]);
    let out = run_ok(
        example("increment_client"),
        &["--addr", &addr, "--value", &u64::MAX.to_string()],
    );
    assert_eq!(out, ["0"], "wraps at u64::MAX");
}

#[test]
fn iterative_increment_server_over_unix_socket_answers() {
    let dir = tempfile::tempdir().unwrap();
    let sock = format!("unix:{}", dir.path().join("inc.sock").display());
    let mut server = Proc::spawn(
        example("increment_server"),
        &["--addr", &sock, "--iterative"],
    );
    assert_eq!(server.listening_addr(), sock);
    let out = run_ok(
        example("increment_client"),
        &["--addr", &sock, "--value", "1"],
    );
    assert_eq!(out, ["2"]);
}

#[test]
fn clients_find_servers_through_the_mw_registry() {
    let mut registry = Proc::spawn(mw_bin(), &["registry", "--addr", "127.0.0.1:0"]);
    let reg = registry.listening_addr();
    // Servers register before they print their readiness line.
    let mut inc = Proc::spawn(
        example("increment_server"),
        &["--addr", "127.0.0.1:0", "--registry", &reg],
    );
    let inc_addr = inc.listening_addr();
    let mut date = Proc::spawn(
        example("date_server"),
        &["--addr", "127.0.0.1:0", "--registry", &reg],
    );
    let date_addr = date.listening_addr();

    let out = run_ok(
        example("increment_client"),
        &["--registry", &reg, "--value", "41"],
    );
    assert_eq!(out, ["42"]);
    check_date_output(&run_ok(example("date_client"), &["--registry", &reg]));

    let listed = run_ok(mw_bin(), &["lookup", "--registry", &reg]);
    assert!(
        listed
            .iter()
            .any(|l| l.starts_with(&format!("increment v1 {inc_addr} "))),
        "{listed:?}"
    );
    assert!(
        listed
            .iter()
            .any(|l| l.starts_with(&format!("date v1 {date_addr} "))),
        "{listed:?}"
    );

    // SIGTERM: the server withdraws its registration and exits successfully.
    inc.terminate();
    let (status, _, err) = inc.finish();
    assert!(
        status.success(),
        "increment_server after SIGTERM: {status}; {err}"
    );
    let listed = run_ok(mw_bin(), &["lookup", "--registry", &reg]);
    assert!(
        !listed.iter().any(|l| l.starts_with("increment ")),
        "registration not withdrawn: {listed:?}"
    );
    let err = run_fails(
        example("increment_client"),
        &["--registry", &reg, "--value", "1"],
    );
    assert!(
        err.contains("increment") && err.contains("not registered"),
        "{err}"
    );
}

#[test]
fn bad_command_lines_exit_nonzero_with_a_clear_message() {
    let err = run_fails(
        example("increment_client"),
        &["--addr", "nonsense", "--value", "1"],
    );
    assert!(
        err.contains("nonsense") && err.contains("invalid address"),
        "{err}"
    );
    let err = run_fails(example("increment_client"), &["--addr", "127.0.0.1:1"]);
    assert!(err.contains("--value"), "{err}");
    let err = run_fails(
        example("increment_client"),
        &["--addr", "127.0.0.1:1", "--value", "x"],
    );
    assert!(err.contains("--value") && err.contains('x'), "{err}");
    let err = run_fails(example("date_client"), &[]);
    assert!(
        err.contains("--addr") && err.contains("--registry"),
        "{err}"
    );
    let err = run_fails(example("date_server"), &["--addr", "nonsense"]);
    assert!(err.contains("nonsense"), "{err}");
    let err = run_fails(mw_bin(), &[]);
    assert!(err.to_lowercase().contains("usage"), "{err}");
    let err = run_fails(mw_bin(), &["lookup"]);
    assert!(err.contains("--registry"), "{err}");
}

#[test]
fn client_of_an_address_where_nothing_listens_says_so() {
    // A port that was just free: bind it, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let err = run_fails(example("date_client"), &["--addr", &addr]);
    assert!(
        err.contains(&addr) && err.contains("cannot"),
        "message should name the address: {err}"
    );
}

/// The coke machine's tally must add up, embedded and through a real broker, and the
/// bounded machine must be seen refusing a supplier that ignores the bound.
#[test]
fn coke_machine_tally_adds_up_embedded_and_through_a_broker() {
    let check = |out: &[String]| {
        let adds_up = out
            .iter()
            .find(|l| l.contains("supplied =") && l.contains("bought"))
            .unwrap_or_else(|| panic!("no tally line in {out:?}"));
        assert!(adds_up.ends_with("adds up"), "{adds_up}");
        // "N supplied = B bought + L left": the arithmetic is the example's claim; check it.
        let nums: Vec<u64> = adds_up
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|t| t.parse().ok())
            .collect();
        assert!(nums.len() >= 3, "{adds_up}");
        assert_eq!(nums[0], nums[1] + nums[2], "{adds_up}");
    };
    let out = run_ok(example("coke_machine"), &[]);
    check(&out);
    assert!(
        out.iter()
            .any(|l| l.contains("refused") && l.contains("full")),
        "the bounded machine refuses a supplier that ignores the bound: {out:?}"
    );

    let data = tempfile::tempdir().unwrap();
    let data_arg = data.path().to_str().unwrap().to_string();
    let mut broker = Proc::spawn(
        mw_bin(),
        &["broker", "--addr", "127.0.0.1:0", "--data", &data_arg],
    );
    let addr = broker.listening_addr();
    check(&run_ok(example("coke_machine"), &["--broker", &addr]));
}

/// The sensor feed: a publisher process and a later subscriber process that never name
/// each other; the retained temperature reaches the late subscriber at once.
#[test]
fn sensors_late_subscriber_gets_the_retained_reading() {
    let data = tempfile::tempdir().unwrap();
    let data_arg = data.path().to_str().unwrap().to_string();
    let mut broker = Proc::spawn(
        mw_bin(),
        &["broker", "--addr", "127.0.0.1:0", "--data", &data_arg],
    );
    let addr = broker.listening_addr();
    let published = run_ok(
        example("sensors"),
        &[
            "publish",
            "--broker",
            &addr,
            "--room",
            "kitchen",
            "--count",
            "3",
            "--interval-ms",
            "1",
        ],
    );
    assert!(!published.is_empty(), "the publisher reports what it sent");
    let mut sub = Proc::spawn(
        example("sensors"),
        &["subscribe", "--broker", &addr, "sensors.*.temp"],
    );
    let first = sub.line();
    assert!(first.starts_with("sensors.kitchen.temp: "), "{first}");
    assert!(
        first.contains("#2"),
        "the last (retained) reading comes first: {first}"
    );
}

/// Linda's bag of tasks: every task is done exactly once by some worker process, and the
/// per-worker tally adds up, with the example's own broker and through `mw broker`.
#[test]
fn tuplespace_bag_of_tasks_does_each_task_once() {
    let check = |out: &[String], tasks: usize| {
        let done: Vec<&String> = out.iter().filter(|l| l.starts_with("task ")).collect();
        assert_eq!(done.len(), tasks, "one line per task: {out:?}");
        for (i, line) in done.iter().enumerate() {
            assert!(line.starts_with(&format!("task {i:>2}:")), "{line}");
            assert!(line.contains("done by worker-"), "{line}");
        }
        let tally = out
            .iter()
            .find(|l| l.starts_with("tally: "))
            .unwrap_or_else(|| panic!("no tally in {out:?}"));
        assert!(
            tally.ends_with(&format!("({tasks} tasks, each done once)")),
            "{tally}"
        );
        let per_worker: usize = tally["tally: ".len()..tally.find(" (").unwrap()]
            .split(", ")
            .map(|w| w.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
            .sum();
        assert_eq!(per_worker, tasks, "{tally}");
        assert_eq!(
            out.last().map(String::as_str),
            Some("master: all workers stopped")
        );
    };
    check(&run_ok(example("tuplespace"), &[]), 20);

    let data = tempfile::tempdir().unwrap();
    let data_arg = data.path().to_str().unwrap().to_string();
    let mut broker = Proc::spawn(
        mw_bin(),
        &["broker", "--addr", "127.0.0.1:0", "--data", &data_arg],
    );
    let addr = broker.listening_addr();
    let out = run_ok(
        example("tuplespace"),
        &["--broker", &addr, "--workers", "4", "--tasks", "12"],
    );
    check(&out, 12);
}
