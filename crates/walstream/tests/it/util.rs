//! Helpers shared by the facade integration tests: clusters with settings, streams, reading
//! events with a timeout, and feeding events through a transaction assembler.

use std::future::Future;
use std::time::Duration;

use walstream::{
    Assembled, AssemblyOptions, Config, Event, EventKind, LogicalStream, LogicalStreamBuilder,
    LsnFeedback, Row, Transaction, TransactionAssembler, Value,
};
use walstream_test_support::{Cluster, ClusterOptions, PgInstall, Role};

pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// A cluster with a short sender timeout and extra settings.
pub(crate) fn cluster(install: &PgInstall, settings: &[(&str, &str)]) -> Cluster {
    let mut options = ClusterOptions::new().setting("wal_sender_timeout", "2s");
    for (k, v) in settings {
        options = options.setting(*k, *v);
    }
    Cluster::start(install, options).unwrap()
}

pub(crate) fn config(c: &Cluster) -> Config {
    format!("{} sslmode=disable", c.conninfo(Role::Scram))
        .parse()
        .unwrap()
}

/// A builder for `slot` over publication `publication`.
pub(crate) fn builder(c: &Cluster, slot: &str, publication: &str) -> LogicalStreamBuilder {
    LogicalStream::builder(config(c), slot)
        .publication(publication)
        .status_interval(Duration::from_millis(200))
}

/// The slot's `confirmed_flush_lsn` (0 when unknown).
pub(crate) fn confirmed(c: &Cluster, slot: &str) -> u64 {
    c.replication_slots()
        .unwrap()
        .into_iter()
        .find(|s| s.slot_name == slot)
        .and_then(|s| s.confirmed_flush_lsn)
        .unwrap_or(0)
}

pub(crate) async fn next(stream: &mut LogicalStream) -> Event {
    tokio::time::timeout(Duration::from_secs(30), stream.next_event())
        .await
        .expect("no event within 30 s")
        .expect("stream error")
        .expect("stream ended")
}

/// Reads events up to and including the first one `last` accepts.
pub(crate) async fn until(
    stream: &mut LogicalStream,
    mut last: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        let ev = next(stream).await;
        let done = last(&ev);
        out.push(ev);
        if done {
            return out;
        }
    }
}

/// Reads events until `n` (non-streamed) commits arrived.
pub(crate) async fn until_commits(stream: &mut LogicalStream, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < n {
        let ev = next(stream).await;
        if matches!(ev.kind(), EventKind::Commit(_)) {
            seen += 1;
        }
        out.push(ev);
    }
    out
}

/// An integer column of a row.
pub(crate) fn int(row: &Row, column: &str) -> i64 {
    row.get(column)
        .unwrap()
        .value()
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("{column} is not an integer in {row:?}"))
}

/// The `id` of an inserted row.
pub(crate) fn inserted_id(ev: &Event) -> Option<i64> {
    match ev.kind() {
        EventKind::Insert(ch) => ch.new.as_ref().map(|r| int(r, "id")),
        _ => None,
    }
}

/// The kinds of events, without begin/commit/relation/type noise.
pub(crate) fn kinds(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .map(Event::kind_name)
        .filter(|k| !matches!(*k, "relation" | "type"))
        .collect()
}

/// Feeds `events` through a new assembler and returns everything it hands out, plus its peak
/// buffered bytes.
pub(crate) fn assemble(
    events: &[Event],
    options: AssemblyOptions,
    feedback: &LsnFeedback,
) -> (Vec<Assembled>, usize) {
    let mut asm = TransactionAssembler::new(options, feedback.clone());
    let mut out = Vec::new();
    for ev in events {
        asm.push(ev.clone()).unwrap();
        while let Some(item) = asm.poll() {
            out.push(item);
        }
    }
    (out, asm.peak_buffered_bytes())
}

/// The inserted ids of a transaction's changes, in order (reading back spilled changes).
pub(crate) fn transaction_ids(t: &mut Transaction) -> Vec<i64> {
    let mut ids = Vec::new();
    while let Some(ev) = t.next_change() {
        let ev = ev.unwrap();
        if let Some(id) = inserted_id(&ev) {
            ids.push(id);
        }
    }
    ids
}
