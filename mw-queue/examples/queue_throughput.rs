//! Rough throughput check of the embedded queue: N concurrent senders of
//! 100-byte messages with group commit, then one consumer draining them.
//!
//! `cargo run --release -p mw-queue --example queue_throughput -- [messages] [senders] [dir]`
//! (the real benchmark lives in mw-bench).

use std::time::Instant;

use mw_queue::{Config, ConsumerOptions, Message, QueueManager};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(Ok(200_000), |s| s.parse())?;
    let senders: usize = args.get(2).map_or(Ok(256), |s| s.parse())?;
    let tmp = tempfile::tempdir()?;
    let dir = args.get(3).map_or(tmp.path().to_path_buf(), Into::into);
    let qm = QueueManager::open(&dir, Config::default()).await?;
    let q = qm.queue("bench");
    let body = bytes::Bytes::from(vec![b'x'; 100]);
    let start = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|t| {
            let q = q.clone();
            let body = body.clone();
            tokio::spawn(async move {
                for _ in (t..n).step_by(senders) {
                    q.send(Message::new(body.clone())).await.expect("send");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    let el = start.elapsed();
    let s = qm.log_stats();
    println!(
        "send: {n} x 100 B by {senders} tasks in {el:?}: {:.0} msg/s; fsyncs {}, records/fsync {:.1} (max {})",
        n as f64 / el.as_secs_f64(),
        s.fsyncs,
        s.records_per_fsync(),
        s.max_records_per_fsync
    );
    println!("memory: {:?}", qm.memory());
    let start = Instant::now();
    let mut c = q.consumer(ConsumerOptions {
        prefetch: 256,
        ..Default::default()
    });
    let mut acks = Vec::new();
    for _ in 0..n {
        let d = c.recv().await?;
        let q = q.clone();
        let tag = d.tag();
        drop(d);
        acks.push(tokio::spawn(async move { q.ack(tag).await }));
        if acks.len() >= 256 {
            for a in acks.drain(..) {
                a.await??;
            }
        }
    }
    for a in acks.drain(..) {
        a.await??;
    }
    let el = start.elapsed();
    let s = qm.log_stats();
    println!(
        "consume+ack: {n} in {el:?}: {:.0} msg/s; segments left {}, records/fsync {:.1}",
        n as f64 / el.as_secs_f64(),
        qm.segment_count(),
        s.records_per_fsync()
    );
    qm.close().await?;
    Ok(())
}
