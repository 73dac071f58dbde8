//! Queue recovery time on adversarial segments: how long `QueueManager::open` takes on
//! a last segment whose body, after a valid header, is the bytes `10 00 02 00` repeated
//! (every fourth offset claims a long record of a known kind). Recovery must be linear
//! in the bytes it reads whatever they hold, so the time per MiB should stay flat from
//! 1 MiB to 64 MiB.
//!
//! ```text
//! cargo run --release -p mw-bench -- recovery [--sizes 1,4,16,64]
//! ```

use std::time::Instant;

use clap::Args;

use crate::Error;

/// Flags of `mw-bench recovery`.
#[derive(Debug, Args)]
pub struct RecoveryArgs {
    /// Sizes in MiB of the adversarial data after the segment header.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    sizes: Vec<usize>,
}

/// The 24-byte segment header of FORMAT: magic, version 1, reserved, first LSN 1.
fn header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[..8].copy_from_slice(b"MWQSEG\r\n");
    h[8..10].copy_from_slice(&1u16.to_le_bytes());
    h[16..24].copy_from_slice(&1u64.to_le_bytes());
    h
}

/// Runs the recovery benchmark and prints one line per size.
pub fn run(args: &RecoveryArgs) -> Result<(), Error> {
    let rt = tokio::runtime::Runtime::new()?;
    println!("queue recovery over a segment of repeating `10 00 02 00` after a valid header");
    println!(
        "{:>8} {:>12} {:>12}  outcome",
        "MiB", "open ms", "ms per MiB"
    );
    for &mib in &args.sizes {
        let dir = tempfile::tempdir()?;
        let mut buf = header().to_vec();
        buf.extend([0x10u8, 0x00, 0x02, 0x00].iter().cycle().take(mib << 20));
        std::fs::write(dir.path().join("00000000000000000001.seg"), &buf)?;
        drop(buf);
        let started = Instant::now();
        let opened = rt.block_on(mw_queue::QueueManager::open(
            dir.path(),
            mw_queue::Config::default(),
        ));
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let outcome = match opened {
            Ok(qm) => {
                let torn = qm.recovery_report().torn_tail.is_some();
                rt.block_on(qm.close())?;
                format!("opened (torn tail cut: {torn})")
            }
            Err(e) => format!("refused: {e}"),
        };
        println!("{mib:>8} {ms:>12.1} {:>12.2}  {outcome}", ms / mib as f64);
    }
    Ok(())
}
