//! The `mw.space` service over real sockets (127.0.0.1:0): exactly-once takes under
//! competing takers, takers that disconnect mid-call, expired holds, typed refusals and
//! notifications.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use mw_rpc::{RunningServer, Server};
use mw_space::remote::{Offer, SpaceService, TupleSpaceClient, TupleSpaceServer};
use mw_space::{
    pattern, tuple, Config, Field, Pattern, RemoteSpace, Space, SpaceError, Type, Wait,
};

const STEP: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STEP:?} waiting for: {what}"))
}

async fn serve(space: &Space) -> (RunningServer, String) {
    let server = Server::builder()
        .add(TupleSpaceServer::new(SpaceService::new(space.clone())))
        .build()
        .spawn("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    (server, addr)
}

/// Waits (bounded, without sleeping) until the space has `n` blocked callers.
async fn waiters(space: &Space, n: u64) {
    within("blocked callers", async {
        loop {
            if space.stats().waiters == n {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_takers_get_each_tuple_exactly_once() {
    const TAKERS: usize = 20;
    const TASKS: i64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let space = Space::open(dir.path(), Config::default(), Default::default())
        .await
        .unwrap();
    let (server, addr) = serve(&space).await;
    let mut takers = Vec::new();
    for _ in 0..TAKERS {
        let remote = RemoteSpace::connect(&addr).await.unwrap();
        takers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let t = remote
                    .in_(&pattern!(Type::String, Type::Int), Wait::Forever)
                    .await
                    .unwrap()
                    .unwrap();
                if t[0].as_str() == Some("stop") {
                    return got;
                }
                got.push(t[1].as_int().unwrap());
            }
        }));
    }
    // Every taker is blocked before the first task exists: they all compete for each.
    waiters(&space, TAKERS as u64).await;
    let writer = RemoteSpace::connect(&addr).await.unwrap();
    for i in 0..TASKS {
        writer.out(tuple!("task", i)).await.unwrap();
    }
    for _ in 0..TAKERS {
        writer.out(tuple!("stop", -1)).await.unwrap();
    }
    let mut all = Vec::new();
    for t in takers {
        all.extend(within("a taker finishing", t).await.unwrap());
    }
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), TASKS as usize, "no task taken twice");
    assert_eq!(distinct, (0..TASKS).collect(), "every task taken");
    // The last confirms may still be on their way when the takers return: wait (bounded)
    // for the space to settle, then nothing may be left.
    let stats = within("the space settling", async {
        loop {
            let s = space.stats();
            if (s.tuples, s.held, s.waiters) == (0, 0, 0) {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(
        (stats.tuples, stats.held, stats.waiters),
        (0, 0, 0),
        "{stats:?}"
    );
    server.shutdown().await;
}

/// A taker on its own thread and runtime. Killing it drops the runtime with the
/// connection and the `take` call still open, without a word to the broker: what a
/// crashed taker process looks like from the other end.
struct DoomedTaker {
    die: tokio::sync::oneshot::Sender<()>,
    offer: tokio::sync::oneshot::Receiver<Offer>,
    thread: std::thread::JoinHandle<()>,
}

impl DoomedTaker {
    fn start(addr: &str, pattern: Pattern) -> DoomedTaker {
        let (die_tx, mut die_rx) = tokio::sync::oneshot::channel::<()>();
        let (offer_tx, offer_rx) = tokio::sync::oneshot::channel();
        let addr = addr.to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let client = rt.block_on(TupleSpaceClient::connect(&addr)).unwrap();
            let mut stream = rt.block_on(client.take(pattern, Wait::Forever)).unwrap();
            rt.block_on(async {
                let item = tokio::select! {
                    item = stream.next() => Some(item),
                    _ = &mut die_rx => None,
                };
                if let Some(Some(Ok(Ok(Some(offer))))) = item {
                    let _ = offer_tx.send(offer);
                    let _ = die_rx.await;
                }
            });
            // The runtime goes first, with the connection's tasks: no Cancel is sent.
            drop(rt);
            drop(stream);
            drop(client);
        });
        DoomedTaker {
            die: die_tx,
            offer: offer_rx,
            thread,
        }
    }

    async fn kill(self) {
        let _ = self.die.send(());
        tokio::task::spawn_blocking(move || self.thread.join().unwrap())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taker_that_disconnects_after_the_offer_gives_the_tuple_back() {
    let space = Space::default();
    let (server, addr) = serve(&space).await;
    let p = pattern!("job", Type::Int);
    space.out(tuple!("job", 1)).await.unwrap();
    let mut doomed = DoomedTaker::start(&addr, p.clone());
    let offer = within("the offer", &mut doomed.offer).await.unwrap();
    assert_eq!(offer.tuple, tuple!("job", 1));
    assert_eq!(
        space.stats().held,
        1,
        "held for the taker, invisible to others"
    );
    assert_eq!(space.rdp(&p).await.unwrap(), None);
    doomed.kill().await;
    // The broker sees the connection end, drops the take and puts the tuple back.
    let live = RemoteSpace::connect(&addr).await.unwrap();
    let back = within("the tuple back", live.in_(&p, Duration::from_secs(10))).await;
    assert_eq!(back.unwrap(), Some(tuple!("job", 1)));
    // A confirmation of the dead taker's hold (from anywhere) is refused.
    let err = live.client().confirm(offer.hold).await.unwrap_err();
    assert!(matches!(SpaceError::from(err), SpaceError::UnknownHold(h) if h == offer.hold));
    assert_eq!(space.stats().tuples, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taker_that_disconnects_while_blocked_takes_nothing() {
    let space = Space::default();
    let (server, addr) = serve(&space).await;
    let p = pattern!("job", Type::Int);
    let doomed = DoomedTaker::start(&addr, p.clone());
    waiters(&space, 1).await;
    doomed.kill().await;
    // A live taker arrives after the dead one; the tuple must reach it, whether or not the
    // broker has noticed the dead connection yet.
    let live = RemoteSpace::connect(&addr).await.unwrap();
    let taker = {
        let p = p.clone();
        tokio::spawn(async move { live.in_(&p, Duration::from_secs(10)).await })
    };
    within("the live taker waits", async {
        while space.stats().waiters < 1 || taker.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    space.out(tuple!("job", 2)).await.unwrap();
    let got = within("the live taker", taker).await.unwrap().unwrap();
    assert_eq!(got, Some(tuple!("job", 2)));
    waiters(&space, 0).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_not_confirmed_in_time_goes_back() {
    let config = Config {
        hold_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let space = Space::new(config, Default::default());
    let (server, addr) = serve(&space).await;
    space.out(tuple!("slow")).await.unwrap();
    let client = TupleSpaceClient::connect(&addr).await.unwrap();
    let mut stream = client.take(pattern!("slow"), Wait::No).await.unwrap();
    let offer = stream.next().await.unwrap().unwrap().unwrap().unwrap();
    // The taker stays connected but never confirms: after the hold timeout the tuple is
    // visible again (this rd is the readiness signal) and the stream has ended.
    let back = within(
        "the hold expiring",
        space.rd(&pattern!("slow"), Duration::from_secs(10)),
    )
    .await;
    assert_eq!(back.unwrap(), Some(tuple!("slow")));
    assert!(within("the take stream ending", stream.next())
        .await
        .is_none());
    let err = client.confirm(offer.hold).await.unwrap_err();
    assert!(matches!(SpaceError::from(err), SpaceError::UnknownHold(_)));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tuples_and_patterns_and_full_spaces_are_typed_refusals() {
    let config = Config {
        max_arity: 3,
        max_tuple_bytes: 100,
        max_tuples: 2,
        max_waiters: 1,
        ..Config::default()
    };
    let space = Space::new(config, Default::default());
    let (server, addr) = serve(&space).await;
    let remote = RemoteSpace::connect(&addr).await.unwrap();
    let err = remote.out(tuple!(1, 2, 3, 4)).await.unwrap_err();
    assert!(
        matches!(
            err,
            SpaceError::TooManyFields {
                arity: 4,
                limit: 3,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.to_string(), "tuple has 4 fields; the limit is 3");
    let err = remote.out(tuple!("x".repeat(101))).await.unwrap_err();
    assert!(
        matches!(
            err,
            SpaceError::TooLarge {
                size: 101,
                limit: 100,
                ..
            }
        ),
        "{err}"
    );
    let err = remote.out(tuple!(f64::NAN)).await.unwrap_err();
    assert!(
        matches!(err, SpaceError::NonFiniteFloat { index: 0, .. }),
        "{err}"
    );
    let err = remote.client().out(tuple!(1), Some(0)).await.unwrap_err();
    assert!(matches!(SpaceError::from(err), SpaceError::ZeroLease));
    let err = remote
        .rdp(&pattern!(Field::Any, 1, 2, 3))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SpaceError::TooManyFields {
                what: mw_space::What::Pattern,
                ..
            }
        ),
        "{err}"
    );
    remote.out(tuple!(1)).await.unwrap();
    remote.out(tuple!(2)).await.unwrap();
    let err = remote.out(tuple!(3)).await.unwrap_err();
    assert!(matches!(err, SpaceError::SpaceFull { limit: 2 }), "{err}");
    let blocked = {
        let remote = remote.clone();
        tokio::spawn(async move { remote.rd(&pattern!("never"), Wait::Forever).await })
    };
    waiters(&space, 1).await;
    let err = remote
        .in_(&pattern!("never"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SpaceError::TooManyWaiters { limit: 1 }),
        "{err}"
    );
    let err = remote.client().confirm(12345).await.unwrap_err();
    assert!(matches!(
        SpaceError::from(err),
        SpaceError::UnknownHold(12345)
    ));
    blocked.abort();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_streams_the_matching_writes() {
    let space = Space::default();
    let (server, addr) = serve(&space).await;
    // The remote notify needs the broker's bus: serve it beside the space.
    let bus_server = Server::builder()
        .add(TupleSpaceServer::new(SpaceService::new(space.clone())))
        .add(mw_pubsub::remote::PubSubServer::new(
            mw_pubsub::remote::PubSubService::new(space.bus().clone()),
        ))
        .build()
        .spawn("127.0.0.1:0")
        .await
        .unwrap();
    let remote = RemoteSpace::connect(&bus_server.local_addr().to_string())
        .await
        .unwrap();
    let p = pattern!("result", Type::Int, Field::Any);
    let mut far = remote.notify(&p, Default::default()).await.unwrap();
    let mut near = space.notify(&p, Default::default()).unwrap();
    let writer = RemoteSpace::connect(&addr).await.unwrap();
    writer
        .out(tuple!("result", 1.5, "no: a float"))
        .await
        .unwrap();
    writer.out(tuple!("other", 1, "no")).await.unwrap();
    writer.out(tuple!("result", 7, "yes")).await.unwrap();
    // Taken at once: notify reports writes, whatever happens to the tuple after.
    writer.inp(&p).await.unwrap().unwrap();
    writer.out(tuple!("result", 8, vec![1u8])).await.unwrap();
    for notes in [&mut far, &mut near] {
        assert_eq!(
            within("first", notes.next()).await.unwrap(),
            tuple!("result", 7, "yes")
        );
        assert_eq!(
            within("second", notes.next()).await.unwrap(),
            tuple!("result", 8, vec![1u8])
        );
        assert_eq!(notes.missed(), 0);
    }
    // Subscriptions are open streams: end them first, or the drain waits for them.
    drop((far, near));
    bus_server.shutdown().await;
    server.shutdown().await;
}
