//! Argument parsing shared by the `mw` verbs: byte sizes (`4MiB`) and the broker
//! address default (`--broker`, else `$MW_BROKER`, else [`DEFAULT_BROKER`]).

/// The broker address client verbs use when neither `--broker` nor `MW_BROKER` is given:
/// where `mw broker` listens by default.
pub const DEFAULT_BROKER: &str = "127.0.0.1:7800";

/// The environment variable naming the broker for client verbs without `--broker`
/// (an empty value counts as unset).
pub const BROKER_ENV: &str = "MW_BROKER";

/// `--broker ADDR`, else `$MW_BROKER`, else [`DEFAULT_BROKER`]: the broker a client verb
/// talks to. Flattened into every verb's arguments (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerAddr {
    /// The broker's address.
    #[arg(long = "broker", id = "broker", value_name = "BROKER", env = BROKER_ENV, default_value = DEFAULT_BROKER)]
    pub addr: String,
}

/// Parses a byte size: a number with an optional unit, `B`, `KiB`/`K`/`KB`, `MiB`/`M`/`MB`
/// or `GiB`/`G`/`GB` (all powers of 1024; case-insensitive): `4194304`, `4MiB`, `64k`.
///
/// ```
/// assert_eq!(mw::cli_args::parse_size("4MiB"), Ok(4 << 20));
/// assert_eq!(mw::cli_args::parse_size("64k"), Ok(64 << 10));
/// assert_eq!(mw::cli_args::parse_size("100"), Ok(100));
/// assert!(mw::cli_args::parse_size("4 parsecs").is_err());
/// ```
///
/// # Errors
/// Text that is not such a size, or one that overflows `usize`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("{s:?}: expected a size such as 1048576, 512KiB, 4MiB or 1GiB");
    let n: usize = digits.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(bad()),
    };
    n.checked_mul(1usize << shift)
        .ok_or_else(|| format!("{s:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("16 MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }
}
