//! `mw demo`, the quick start's main job, runs end to end and tells the truth.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_tour_runs_every_part_and_reports_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        mw::tour::run(&mut out, dir.path()),
    )
    .await
    .expect("the tour finishes")
    .expect("every step succeeds");
    let text = String::from_utf8(out).unwrap();
    for line in [
        "inc(41) = 42",
        "then awaited: 2, 3",
        "a v2 client is told: version mismatch",
        "reopened after a simulated crash: depth 3",
        "received \"espresso\" (attempt 2), ack",
        "reached 0 subscribers (lost)",
        "(missed before it: 1)",
        "sensors.hall.temp 19.0",
        "done.",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}
