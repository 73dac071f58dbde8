//! A persistent space in a temp dir: reopening after a close (and after a torn write),
//! compaction, the directory lock, group commit, and a take undone after its commit was
//! queued.

use std::time::Duration;

use mw_queue::FsyncPolicy;
use mw_space::{log::LOG_FILE, pattern, tuple, Config, Field, Space, SpaceError, Type};

async fn open(dir: &std::path::Path, config: Config) -> Space {
    Space::open(dir, config, Default::default()).await.unwrap()
}

#[tokio::test]
async fn tuples_survive_a_reopen_minus_the_taken_ones() {
    let dir = tempfile::tempdir().unwrap();
    let space = open(dir.path(), Config::default()).await;
    let a = space.out(tuple!("a", 1)).await.unwrap();
    space.out(tuple!("b", 2.5, vec![0u8, 1])).await.unwrap();
    space
        .out_leased(tuple!("c", true), Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        space
            .inp(&pattern!("b", Field::Any, Field::Any))
            .await
            .unwrap(),
        Some(tuple!("b", 2.5, vec![0u8, 1]))
    );
    space.close().await.unwrap();
    drop(space);

    let space = open(dir.path(), Config::default()).await;
    assert_eq!(space.stats().tuples, 2);
    assert_eq!(
        space.rdp(&pattern!("a", Type::Int)).await.unwrap(),
        Some(tuple!("a", 1))
    );
    assert_eq!(
        space.rdp(&pattern!("c", true)).await.unwrap(),
        Some(tuple!("c", true))
    );
    assert_eq!(
        space
            .rdp(&pattern!("b", Field::Any, Field::Any))
            .await
            .unwrap(),
        None
    );
    let next = space.out(tuple!("d")).await.unwrap();
    assert!(next > a, "ids keep increasing across restarts");
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_everything_before_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let space = open(dir.path(), Config::default()).await;
    for i in 0..3 {
        space.out(tuple!("t", i)).await.unwrap();
    }
    space.close().await.unwrap();
    drop(space);
    // A crash in the middle of writing the next record: its first bytes only.
    let path = dir.path().join(LOG_FILE);
    let intact = std::fs::metadata(&path).unwrap().len();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&path, &bytes).unwrap();

    let space = open(dir.path(), Config::default()).await;
    assert_eq!(std::fs::metadata(&path).unwrap().len(), intact);
    assert_eq!(space.stats().tuples, 3);
    space.out(tuple!("t", 3)).await.unwrap();
    space.close().await.unwrap();
    drop(space);
    let space = open(dir.path(), Config::default()).await;
    assert_eq!(space.stats().tuples, 4);
}

#[tokio::test]
async fn damage_inside_the_log_is_reported_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let space = open(dir.path(), Config::default()).await;
    space.out(tuple!("first")).await.unwrap();
    space.out(tuple!("second")).await.unwrap();
    space.close().await.unwrap();
    drop(space);
    let path = dir.path().join(LOG_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[16 + 9] ^= 0xff; // inside the first record
    std::fs::write(&path, &bytes).unwrap();
    match Space::open(dir.path(), Config::default(), Default::default()).await {
        Err(SpaceError::Corrupt { offset, .. }) => assert_eq!(offset, 16),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn compaction_keeps_exactly_the_live_tuples() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        compact_slack: 10,
        ..Config::default()
    };
    let space = open(dir.path(), config.clone()).await;
    for i in 0..100 {
        space.out(tuple!("n", i)).await.unwrap();
    }
    for _ in 0..95 {
        space.inp(&pattern!("n", Type::Int)).await.unwrap().unwrap();
    }
    let log = space.stats().log.unwrap();
    assert!(log.compactions > 0, "{log:?}");
    assert!(log.records < 40, "the log shrank: {log:?}");
    space.close().await.unwrap();
    drop(space);
    let space = open(dir.path(), config).await;
    let mut left = Vec::new();
    while let Some(t) = space.inp(&pattern!("n", Type::Int)).await.unwrap() {
        left.push(t[1].as_int().unwrap());
    }
    assert_eq!(left, vec![95, 96, 97, 98, 99]);
}

#[tokio::test]
async fn one_process_at_a_time_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let space = open(dir.path(), Config::default()).await;
    assert!(matches!(
        Space::open(dir.path(), Config::default(), Default::default()).await,
        Err(SpaceError::Locked(_))
    ));
    drop(space);
    // Dropping the last handle releases the directory at once.
    open(dir.path(), Config::default()).await;
}

#[tokio::test]
async fn concurrent_writes_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let space = open(dir.path(), Config::default()).await;
    let writes: Vec<_> = (0..200)
        .map(|i| {
            let space = space.clone();
            tokio::spawn(async move { space.out(tuple!("w", i)).await })
        })
        .collect();
    for w in writes {
        w.await.unwrap().unwrap();
    }
    let log = space.stats().log.unwrap();
    assert_eq!(log.written, 200);
    // 200 writers queued at once cannot each have had an fsync of their own.
    assert!(log.fsyncs >= 1 && log.fsyncs < 200, "{log:?}");

    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        fsync: FsyncPolicy::Never,
        ..Config::default()
    };
    let space = open(dir.path(), config).await;
    space.out(tuple!(1)).await.unwrap();
    assert_eq!(space.stats().log.unwrap().fsyncs, 0);
}

#[tokio::test]
async fn a_take_dropped_after_its_commit_was_queued_is_written_back() {
    let dir = tempfile::tempdir().unwrap();
    let space = open(dir.path(), Config::default()).await;
    space.out(tuple!("job", 7)).await.unwrap();
    let p = pattern!("job", Type::Int);
    {
        let fut = space.in_(&p, Duration::from_secs(1));
        tokio::pin!(fut);
        // One poll holds the match and queues its commit for the log writer; then the
        // taker is gone before it could be handed the tuple.
        assert!(futures::poll!(&mut fut).is_pending());
    }
    // The writer finds nobody to hand it to and writes it back.
    let back = space.rd(&p, Duration::from_secs(10)).await.unwrap();
    assert_eq!(back, Some(tuple!("job", 7)));
    space.close().await.unwrap();
    drop(space);
    let space = open(dir.path(), Config::default()).await;
    assert_eq!(
        space.inp(&p).await.unwrap(),
        Some(tuple!("job", 7)),
        "durably back"
    );
}

#[tokio::test]
async fn absurd_leases_saturate_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let space = open(dir.path(), Config::default()).await;
    space
        .out_leased(tuple!("forever"), Duration::MAX)
        .await
        .unwrap();
    space
        .out_leased(tuple!("long"), Duration::from_millis(u64::MAX))
        .await
        .unwrap();
    assert_eq!(space.stats().visible, 2);
    space.close().await.unwrap();
    drop(space);
    let space = open(dir.path(), Config::default()).await;
    assert_eq!(
        space.rdp(&pattern!("forever")).await.unwrap(),
        Some(tuple!("forever"))
    );
    assert_eq!(
        space.rdp(&pattern!("long")).await.unwrap(),
        Some(tuple!("long"))
    );
}
