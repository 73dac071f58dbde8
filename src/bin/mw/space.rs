//! The `mw space` verbs, as library functions the binary calls.
//!
//! - `mw space out --broker ADDR TUPLE [--lease SECS]` writes TUPLE (a JSON array such as
//!   `'["task", 7]'`) and prints its id once the broker has it durably.
//! - `mw space rd|in --broker ADDR PATTERN [--timeout SECS]` prints a matching tuple as
//!   JSON on one line (`rd` leaves it, `in` removes it), waiting up to SECS for one (without
//!   `--timeout`, until one comes or Ctrl-C).
//! - `mw space rdp|inp --broker ADDR PATTERN` the same without waiting.
//! - `mw space notify --broker ADDR PATTERN [--count N]` prints each matching tuple written
//!   from now on; once subscribed it prints `subscribed to PATTERN` on stderr (a readiness
//!   signal for scripts).
//!
//! Patterns are JSON arrays too: `null` matches any value, `{"?": "int"}` any int (also
//! `string`, `float`, `bool`, `bytes`); see [`mw::space::json`].
//!
//! Tuples and patterns are parsed before connecting, so a typo is reported as such even
//! without a broker. Nothing found is `no matching tuple` with exit code 1; every other
//! failure is one plain line and a non-zero exit code, via [`mw::run::exit_boxed`].

use std::io::Write;
use std::time::Duration;

use mw::cli_args::BrokerAddr;
use mw::pubsub::SubscribeOptions;
use mw::run::BoxError;
use mw::space::{Pattern, RemoteSpace, SpaceError, Tuple, Wait};

/// The error text when nothing matched.
pub const NO_MATCH: &str = "no matching tuple";

/// A `mw space` verb and its arguments. Tuples and patterns are JSON arrays: `'["task", 7]'`;
/// in patterns `null` matches any value and `{"?": "int"}` any int (string, int, float,
/// bool, bytes).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Op {
    /// Write TUPLE into the space; prints its id once the broker has it durably.
    Out {
        /// The broker's address.
        #[command(flatten)]
        broker: BrokerAddr,
        /// Remove the tuple after SECS seconds if nobody took it.
        #[arg(long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true)]
        lease: Option<Duration>,
        /// The tuple, such as '["task", 7]'.
        tuple: String,
    },
    /// Print a tuple matching PATTERN, leaving it in the space; waits for one to come.
    Rd {
        /// The broker's address.
        #[command(flatten)]
        broker: BrokerAddr,
        /// Give up after SECS seconds (exit 1, `no matching tuple`); default: wait forever.
        #[arg(long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true)]
        timeout: Option<Duration>,
        /// The pattern, such as '["task", {"?": "int"}]'.
        pattern: String,
    },
    /// Remove and print a tuple matching PATTERN; waits for one to come.
    In {
        /// The broker's address.
        #[command(flatten)]
        broker: BrokerAddr,
        /// Give up after SECS seconds (exit 1, `no matching tuple`); default: wait forever.
        #[arg(long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true)]
        timeout: Option<Duration>,
        /// The pattern, such as '["task", {"?": "int"}]'.
        pattern: String,
    },
    /// Print a tuple matching PATTERN without waiting (exit 1 if there is none).
    Rdp {
        /// The broker's address.
        #[command(flatten)]
        broker: BrokerAddr,
        /// The pattern, such as '["task", null]'.
        pattern: String,
    },
    /// Remove and print a tuple matching PATTERN without waiting (exit 1 if there is none).
    Inp {
        /// The broker's address.
        #[command(flatten)]
        broker: BrokerAddr,
        /// The pattern, such as '["task", null]'.
        pattern: String,
    },
    /// Print each tuple matching PATTERN as it is written (until Ctrl-C or N tuples).
    Notify {
        /// The broker's address.
        #[command(flatten)]
        broker: BrokerAddr,
        /// Exit after N tuples.
        #[arg(long)]
        count: Option<u64>,
        /// Give up (exit 1) when no tuple is written within SECS seconds of subscribing or
        /// of the previous one; default: wait forever.
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        timeout: Option<Duration>,
        /// The pattern, such as '["result", null, null]'.
        pattern: String,
    },
}

impl Op {
    /// The broker the verb talks to.
    pub fn broker(&self) -> &str {
        match self {
            Op::Out { broker, .. }
            | Op::Rd { broker, .. }
            | Op::In { broker, .. }
            | Op::Rdp { broker, .. }
            | Op::Inp { broker, .. }
            | Op::Notify { broker, .. } => &broker.addr,
        }
    }
}

/// Parses `SECS` (a non-negative number, fractions allowed) for `--timeout` and `--lease`.
///
/// # Errors
/// Text that is not a finite non-negative number of seconds.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1e12).contains(&x) => Ok(Duration::from_secs_f64(x)),
        _ => Err(format!(
            "{s:?}: expected a number of seconds, such as 5 or 0.5"
        )),
    }
}

async fn connect(addr: &str) -> Result<RemoteSpace, BoxError> {
    RemoteSpace::connect_with(addr, mw::cli_tls::client_config())
        .await
        .map_err(|e| {
            let why = match &e {
                SpaceError::Rpc(rpc) => mw::run::chain(rpc),
                other => mw::run::chain(other),
            };
            format!("cannot reach broker at {addr}: {why}").into()
        })
}

fn wait(timeout: Option<Duration>) -> Wait {
    timeout.map_or(Wait::Forever, Wait::For)
}

fn print(out: &mut dyn Write, found: Option<Tuple>) -> Result<(), BoxError> {
    let tuple = found.ok_or(NO_MATCH)?;
    writeln!(out, "{tuple}")?;
    out.flush()?;
    Ok(())
}

/// Runs one `mw space` verb against its broker, printing to `out`.
///
/// # Errors
/// Bad JSON or a bad pattern (before connecting), an unreachable broker, a refusal from
/// the broker (limits, full space), or [`NO_MATCH`].
pub async fn run(op: Op, out: &mut dyn Write) -> Result<(), BoxError> {
    let broker = op.broker().to_owned();
    let broker = broker.as_str();
    match op {
        Op::Out { tuple, lease, .. } => {
            let tuple = Tuple::from_json(&tuple)?;
            if lease.is_some_and(|d| d.is_zero()) {
                return Err("--lease must be more than 0 seconds".into());
            }
            let space = connect(broker).await?;
            let id = match lease {
                Some(d) => space.out_leased(tuple, d).await?,
                None => space.out(tuple).await?,
            };
            writeln!(out, "{id}")?;
        }
        Op::Rd {
            pattern, timeout, ..
        } => {
            let pattern = Pattern::from_json(&pattern)?;
            let space = connect(broker).await?;
            print(out, space.rd(&pattern, wait(timeout)).await?)?;
        }
        Op::In {
            pattern, timeout, ..
        } => {
            let pattern = Pattern::from_json(&pattern)?;
            let space = connect(broker).await?;
            print(out, space.in_(&pattern, wait(timeout)).await?)?;
        }
        Op::Rdp { pattern, .. } => {
            let pattern = Pattern::from_json(&pattern)?;
            let space = connect(broker).await?;
            print(out, space.rdp(&pattern).await?)?;
        }
        Op::Inp { pattern, .. } => {
            let pattern = Pattern::from_json(&pattern)?;
            let space = connect(broker).await?;
            print(out, space.inp(&pattern).await?)?;
        }
        Op::Notify {
            pattern,
            count,
            timeout,
            ..
        } => {
            let pattern = Pattern::from_json(&pattern)?;
            let space = connect(broker).await?;
            let mut notes = space.notify(&pattern, SubscribeOptions::default()).await?;
            eprintln!("subscribed to {pattern}");
            let mut seen = 0u64;
            let mut reported = 0;
            while count.is_none_or(|n| seen < n) {
                let tuple = match timeout {
                    None => notes.next().await?,
                    Some(t) => tokio::time::timeout(t, notes.next()).await.map_err(|_| {
                        format!("no tuple matching {pattern} within {} s", t.as_secs_f64())
                    })??,
                };
                if notes.missed() > reported {
                    reported = notes.missed();
                    eprintln!("mw space notify: {reported} writes missed so far (slow consumer)");
                }
                print(out, Some(tuple))?;
                seen += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_take_fractions_and_refuse_nonsense() {
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs("3"), Ok(Duration::from_secs(3)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
        assert!(parse_secs("inf").is_err());
    }
}
