//! `notify`: the cost of notifications on the decision path. The `decide` cycle (8 clients) runs
//! against two servers side by side, in alternating rounds: one with no notifier, one with a
//! signed-webhook notifier routed every event to a local receiver. Notifications are written in
//! the commit of their event (the outbox) and delivered by their own worker, so the figure to
//! watch is the ratio of the two throughputs; the run also waits for every delivery and reports
//! how long the queue took to drain after the last cycle.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Result;

use crate::{
    decide::cycles,
    harness::{Server, receiver, write_config},
    stats::{Report, Samples, now},
};

/// Notifications each cycle delivers at once: request.approved, grant.active, grant.revoked
/// (the expiry warning and the overdue check are scheduled for later and not due in the run).
const DELIVERED_PER_CYCLE: u64 = 3;

async fn counting_receiver() -> Result<(SocketAddr, Arc<AtomicU64>)> {
    let count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&count);
    let app = axum::Router::new().route(
        "/n",
        axum::routing::post(move || {
            let c = Arc::clone(&c);
            async move {
                c.fetch_add(1, Ordering::Relaxed);
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, count))
}

pub async fn run(clients: usize, per_client: usize) -> Result<()> {
    let hook = receiver().await?;
    let (sink, delivered) = counting_receiver().await?;
    let plain_dir = tempfile::tempdir()?;
    let (plain_cfg, plain_tokens) = write_config(plain_dir.path(), hook, clients, "")?;
    let notified_dir = tempfile::tempdir()?;
    let extra = format!(
        "\n[[notifiers]]\nname = \"siem\"\nkind = \"webhook\"\nurl = \"http://{sink}/n\"\nsecret = {{ file = \"hook.secret\" }}\nallow_private = true\n"
    );
    let (notified_cfg, notified_tokens) = write_config(notified_dir.path(), hook, clients, &extra)?;
    let plain = Server::start(&plain_cfg).await?;
    let notified = Server::start(&notified_cfg).await?;

    let rounds = 3;
    let per_round = per_client.div_ceil(rounds).max(1);
    let (mut a, mut b) = (Samples::default(), Samples::default());
    let (mut a_secs, mut b_secs) = (0.0, 0.0);
    for _ in 0..rounds {
        let (s, secs) = cycles("notify-off", &[&plain], &plain_tokens, per_round).await?;
        a.0.extend(s.0);
        a_secs += secs;
        let (s, secs) = cycles("notify-on", &[&notified], &notified_tokens, per_round).await?;
        b.0.extend(s.0);
        b_secs += secs;
    }
    let expected = b.len() as u64 * DELIVERED_PER_CYCLE;
    let drain = now();
    while delivered.load(Ordering::Relaxed) < expected {
        if drain.elapsed() > Duration::from_secs(60) {
            anyhow::bail!(
                "notify: {} of {expected} notifications delivered after 60 s",
                delivered.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained_ms = drain.elapsed().as_secs_f64() * 1000.0;
    let (a_rps, b_rps) = (a.len() as f64 / a_secs, b.len() as f64 / b_secs);
    for (name, s, rps) in [("off", &a, a_rps), ("on", &b, b_rps)] {
        Report::new("notify")
            .field("notifications", name)
            .field("clients", clients)
            .field("requests", s.len())
            .num("median_ms", s.median() / 1000.0, 2)
            .num("p99_ms", s.percentile(99.0) / 1000.0, 2)
            .num("requests_per_s", rps, 0)
            .print();
    }
    Report::new("notify")
        .field("delivered", delivered.load(Ordering::Relaxed))
        .num("drained_after_last_cycle_ms", drained_ms, 0)
        .num("throughput_ratio_on_to_off", b_rps / a_rps, 2)
        .num("median_ratio_on_to_off", b.median() / a.median(), 2)
        .print();
    plain.running.stop().await;
    notified.running.stop().await;
    Ok(())
}
