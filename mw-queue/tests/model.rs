//! Property test: random sequences of send / ack / nack / reopen keep exactly
//! the un-acked messages, in FIFO order.

mod common;

use std::collections::VecDeque;

use common::*;
use mw_queue::{Clock, Config, Consumer, ConsumerOptions, Message, QueueManager};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Send,
    Ack,
    Nack,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![4 => Just(Op::Send), 2 => Just(Op::Ack), 1 => Just(Op::Nack), 1 => Just(Op::Reopen)]
}

async fn reopen(dir: &std::path::Path, config: &Config) -> (QueueManager, Consumer) {
    let qm = open(dir, config.clone()).await;
    let c = qm.queue("q").consumer(ConsumerOptions {
        prefetch: 1,
        ..Default::default()
    });
    (qm, c)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn unacked_set_survives_any_sequence(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let clock = Clock::manual(T0);
            let config = Config { max_attempts: None, segment_size: 2048, ..manual(&clock) };
            let (mut qm, mut c) = reopen(dir.path(), &config).await;
            let mut model: VecDeque<String> = VecDeque::new();
            let mut next = 0;
            for op in ops {
                match op {
                    Op::Send => {
                        let b = format!("{next:060}");
                        next += 1;
                        qm.queue("q").send(Message::new(b.clone())).await.unwrap();
                        model.push_back(b);
                    }
                    Op::Ack | Op::Nack if model.is_empty() => {}
                    Op::Ack => {
                        let d = recv(&mut c).await;
                        assert_eq!(&body(&d), model.front().unwrap());
                        d.ack().await.unwrap();
                        model.pop_front();
                    }
                    Op::Nack => {
                        let d = recv(&mut c).await;
                        assert_eq!(&body(&d), model.front().unwrap());
                        d.nack(None).await.unwrap();
                    }
                    Op::Reopen => {
                        drop(c);
                        drop(qm);
                        (qm, c) = reopen(dir.path(), &config).await;
                        assert_eq!(qm.recovery_report().live_messages, model.len() as u64);
                    }
                }
                let s = qm.stats("q");
                assert_eq!(s.depth + s.in_flight, model.len() as u64);
            }
            while let Some(expected) = model.pop_front() {
                let d = recv(&mut c).await;
                assert_eq!(body(&d), expected);
                d.ack().await.unwrap();
            }
        });
    }
}
