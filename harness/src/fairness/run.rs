//! The flows of a fairness cell, run together in the client namespace: each
//! opens its own connection, asks for an object larger than it can fetch in
//! its time, and stops when its time is up. The link's queue is sampled
//! meanwhile.

use std::sync::Arc;
use std::time::Duration;

use quicbench_clients::{ConnInfo, Epoch, Request, RequestRecord};
use quicbench_netem::link::Link;
use quicbench_wire::{CongestionControl, Protocol};

use super::stats::Series;
use crate::workloads::{self, Env, Ports};

/// How often the link's standing queue is read.
const QUEUE_SAMPLE: Duration = Duration::from_millis(20);

/// One flow to run.
#[derive(Debug, Clone, Copy)]
pub struct FlowPlan {
    pub protocol: Protocol,
    pub cc: CongestionControl,
    /// The ports of the servers running this flow's controller.
    pub ports: Ports,
    /// After the first flow's start.
    pub delay: Duration,
}

/// What one flow did.
#[derive(Debug)]
pub struct FlowRun {
    pub protocol: Protocol,
    pub cc: CongestionControl,
    pub info: Option<ConnInfo>,
    pub record: Option<RequestRecord>,
    /// Why it failed (connect, a broken body): not a flow to count.
    pub error: Option<String>,
    /// Its bytes over time on the run's epoch.
    pub series: Series,
}

/// The flows and the queue samples.
#[derive(Debug)]
pub struct Run {
    pub flows: Vec<FlowRun>,
    /// (epoch ns, the down direction's queueing wait ns) every
    /// [`QUEUE_SAMPLE`]; empty on the kernel backend.
    pub queue: Vec<(u64, u64)>,
    /// Link clock minus epoch clock, ns (to put the link's curves on the epoch).
    pub link_minus_epoch_ns: i128,
    /// CLOCK_MONOTONIC ns of the epoch's zero.
    pub t0_mono_ns: u64,
}

/// Run every flow for `duration` of download each, `size` bytes asked.
pub async fn run(
    env: &Env,
    plans: &[FlowPlan],
    duration: Duration,
    size: u64,
    link: Arc<Link>,
) -> Run {
    let epoch = Epoch::new();
    let link_minus_epoch_ns = link.now_ns() as i128 - epoch.now_ns() as i128;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (done, link) = (done.clone(), link.clone());
        tokio::spawn(async move {
            let mut out = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(q) = link.standing_queue() {
                    out.push((epoch.now_ns(), q.down.wait_ns));
                }
                tokio::time::sleep(QUEUE_SAMPLE).await;
            }
            out
        })
    };
    let futs = plans.iter().map(|p| one(env, *p, duration, size, epoch));
    let flows = futures::future::join_all(futs).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let queue = sampler.await.unwrap_or_default();
    Run {
        flows,
        queue,
        link_minus_epoch_ns,
        t0_mono_ns: epoch.mono_ns(),
    }
}

async fn one(env: &Env, plan: FlowPlan, duration: Duration, size: u64, epoch: Epoch) -> FlowRun {
    let mut fr = FlowRun {
        protocol: plan.protocol,
        cc: plan.cc,
        info: None,
        record: None,
        error: None,
        series: Series::default(),
    };
    tokio::time::sleep(plan.delay).await;
    let mut env = env.clone();
    env.cc = plan.cc;
    env.ports = plan.ports;
    // The request's time limit is the flow's download time: its end.
    env.timeout = duration;
    let client = match workloads::client(&env, plan.protocol, false, true, epoch) {
        Ok(c) => c,
        Err(e) => {
            fr.error = Some(e);
            return fr;
        }
    };
    let mut conn = match client.connect().await {
        Ok(c) => c,
        Err(e) => {
            fr.error = Some(format!("connect: {e}"));
            return fr;
        }
    };
    let rec = conn.run(&[Request::bytes(size)]).await.into_iter().next();
    fr.info = Some(conn.info().clone());
    conn.close().await;
    let Some(rec) = rec else {
        fr.error = Some("no record".into());
        return fr;
    };
    fr.error = flow_error(&rec);
    let start = rec.request_sent_ns.unwrap_or(rec.start_ns);
    let end = match rec.last_byte_ns {
        Some(t) if rec.ok() => t,
        _ => rec.start_ns + duration.as_nanos() as u64,
    };
    fr.series = Series {
        start_ns: start,
        end_ns: end,
        points: rec.progress.clone(),
    };
    fr.record = Some(rec);
    fr
}

/// A flow ends by its time limit (the designed end) or, rarely, by
/// finishing its object; anything else is a failure. A body cut by the time
/// limit cannot be checked whole (the clients verify a body when it ends):
/// only a finished one is.
fn flow_error(r: &RequestRecord) -> Option<String> {
    match &r.error {
        Some(e) if e.starts_with("timed out") => {
            (r.bytes == 0).then(|| format!("no byte before the time limit: {e}"))
        }
        Some(e) => Some(e.clone()),
        None if r.status.is_some_and(|s| s != 200) => Some(format!("status {:?}", r.status)),
        None if r.verified == Some(false) => Some("wrong bytes".into()),
        None => None,
    }
}
