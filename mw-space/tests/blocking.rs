//! Blocking `rd` / `in`, timeouts, arrival order, leases and cancellation, on an embedded
//! space with paused time: the clock moves only when the test advances it.

use std::time::Duration;

use mw_space::{pattern, tuple, Config, Field, Space, SpaceError, Type};
use tokio::task::JoinHandle;

/// Waits (bounded, without sleeping) until `n` callers are blocked in the space.
async fn waiters(space: &Space, n: u64) {
    for _ in 0..10_000 {
        if space.stats().waiters == n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!(
        "expected {n} blocked callers, have {}",
        space.stats().waiters
    );
}

type Taken = mw_space::Result<Option<mw_space::Tuple>>;

fn spawn_in(space: &Space, p: mw_space::Pattern, wait: Duration) -> JoinHandle<Taken> {
    let space = space.clone();
    tokio::spawn(async move { space.in_(&p, wait).await })
}

#[tokio::test(start_paused = true)]
async fn in_times_out_exactly_when_its_timeout_passes() {
    let space = Space::default();
    let taker = spawn_in(&space, pattern!("job", Type::Int), Duration::from_secs(5));
    waiters(&space, 1).await;
    tokio::time::advance(Duration::from_millis(4_999)).await;
    tokio::task::yield_now().await;
    assert!(
        !taker.is_finished(),
        "still waiting just before the timeout"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(taker.await.unwrap().unwrap(), None, "timed out: no tuple");
    assert_eq!(space.stats().waiters, 0, "the waiter is gone");
}

#[tokio::test(start_paused = true)]
async fn rd_blocks_until_a_match_is_written_and_leaves_it() {
    let space = Space::default();
    let reader = {
        let space = space.clone();
        tokio::spawn(async move {
            space
                .rd(&pattern!("x", Field::Any), Duration::from_secs(60))
                .await
        })
    };
    waiters(&space, 1).await;
    space.out(tuple!("y", 1)).await.unwrap(); // no match: still waiting
    assert_eq!(space.stats().waiters, 1);
    space.out(tuple!("x", 2)).await.unwrap();
    assert_eq!(reader.await.unwrap().unwrap(), Some(tuple!("x", 2)));
    assert_eq!(
        space.rdp(&pattern!("x", 2)).await.unwrap(),
        Some(tuple!("x", 2))
    );
}

#[tokio::test(start_paused = true)]
async fn blocked_takers_are_served_in_arrival_order() {
    let space = Space::default();
    let p = pattern!("job", Type::Int);
    let mut takers = Vec::new();
    for i in 0..3 {
        takers.push(spawn_in(&space, p.clone(), Duration::from_secs(60)));
        waiters(&space, i + 1).await;
    }
    for n in 0..3 {
        space.out(tuple!("job", n)).await.unwrap();
    }
    for (n, t) in takers.into_iter().enumerate() {
        assert_eq!(
            t.await.unwrap().unwrap(),
            Some(tuple!("job", n as i64)),
            "taker {n}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn earlier_readers_get_a_copy_and_the_first_taker_gets_the_tuple() {
    let space = Space::default();
    let reader = {
        let space = space.clone();
        tokio::spawn(async move {
            space
                .rd(&pattern!(Type::String), Duration::from_secs(60))
                .await
        })
    };
    waiters(&space, 1).await;
    let first = spawn_in(&space, pattern!(Field::Any), Duration::from_secs(60));
    waiters(&space, 2).await;
    let second = spawn_in(&space, pattern!("only"), Duration::from_secs(60));
    waiters(&space, 3).await;
    space.out(tuple!("only")).await.unwrap();
    assert_eq!(reader.await.unwrap().unwrap(), Some(tuple!("only")));
    assert_eq!(first.await.unwrap().unwrap(), Some(tuple!("only")));
    assert_eq!(space.stats().waiters, 1, "the later taker still waits");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(second.await.unwrap().unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_leased_tuple_disappears_when_its_lease_runs_out() {
    let space = Space::default();
    space
        .out_leased(tuple!("offer", 10), Duration::from_secs(10))
        .await
        .unwrap();
    space.out(tuple!("offer", 20)).await.unwrap();
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(
        space.rdp(&pattern!("offer", Type::Int)).await.unwrap(),
        Some(tuple!("offer", 10))
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        space.rdp(&pattern!("offer", Type::Int)).await.unwrap(),
        Some(tuple!("offer", 20)),
        "the leased one expired"
    );
    assert_eq!(space.stats().tuples, 1);
    assert!(matches!(
        space.out_leased(tuple!(1), Duration::ZERO).await,
        Err(SpaceError::ZeroLease)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_taker_never_loses_the_tuple() {
    let space = Space::default();
    let p = pattern!("job", Type::Int);
    let gone = spawn_in(&space, p.clone(), Duration::from_secs(60));
    waiters(&space, 1).await;
    let next = spawn_in(&space, p.clone(), Duration::from_secs(60));
    waiters(&space, 2).await;
    gone.abort();
    assert!(gone.await.unwrap_err().is_cancelled());
    space.out(tuple!("job", 1)).await.unwrap();
    assert_eq!(
        next.await.unwrap().unwrap(),
        Some(tuple!("job", 1)),
        "went to the live taker"
    );
    assert_eq!(space.stats().waiters, 0);
}

#[tokio::test(start_paused = true)]
async fn blocked_callers_are_limited_and_closing_wakes_them() {
    let config = Config {
        max_waiters: 2,
        ..Config::default()
    };
    let space = Space::new(config, Default::default());
    let a = spawn_in(&space, pattern!(1), Duration::from_secs(60));
    let b = {
        let space = space.clone();
        tokio::spawn(async move { space.rd(&pattern!(2), mw_space::Wait::Forever).await })
    };
    waiters(&space, 2).await;
    assert!(
        matches!(space.inp(&pattern!(3)).await, Ok(None)),
        "a non-blocking call does not wait, so it is not limited"
    );
    assert!(matches!(
        space.rd(&pattern!(3), Duration::from_secs(1)).await,
        Err(SpaceError::TooManyWaiters { limit: 2 })
    ));
    space.close().await.unwrap();
    assert!(matches!(b.await.unwrap(), Err(SpaceError::Closed)));
    assert!(matches!(a.await.unwrap(), Err(SpaceError::Closed)));
    assert!(matches!(
        space.out(tuple!(1)).await,
        Err(SpaceError::Closed)
    ));
}
