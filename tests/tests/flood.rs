//! One client cannot starve the others: a source certificate that opens hundreds of requests
//! and never sends their bodies holds only its own share, while an operator and a copy station
//! keep getting answers. Real coordinator, real certificates, HTTP/2 over mTLS on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use seedship_e2e::Cluster;
use seedship_proto::{client, pb};

/// A gRPC request whose headers go out and whose body never comes.
fn stalled(path: &str) -> http::Request<tonic::body::Body> {
    let never = futures::stream::pending::<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>();
    http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::StreamBody::new(never)))
        .expect("a request")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_sending_headers_and_no_body_does_not_slow_operators_or_stations() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let (flooder, ops, st) = (c.issue("source", "flooder")?, c.issue("operator", "alice")?, c.issue("copy", "st1")?);
    let mut op = client::operator(c.connect(&ops).await?);
    let station = c.connect(&st).await?;
    seedship_proto::agent::register(&station, None, "t").await?;
    let mut dp = client::diskprep(station);

    // 750 stalled requests from one source certificate, over 12 connections.
    let cfg = c.client_config(&flooder);
    let mut chans = Vec::new();
    for _ in 0..12 {
        chans.push(seedship_proto::client::endpoint(&cfg)?.connect().await?);
    }
    let refused = Arc::new(AtomicUsize::new(0));
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..750 {
        let mut ch = chans[i % chans.len()].clone();
        let refused = refused.clone();
        flood.spawn(async move {
            use tower::{Service, ServiceExt};
            let Ok(ch) = ch.ready().await else { return };
            if let Ok(resp) = ch.call(stalled("/seedship.v1.SeedService/ListOwnSeeds")).await
                && resp.headers().get("grpc-status").is_some_and(|s| s == "8")
            {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // Let the flood arrive, then time the others' calls while it is in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut ops_t, mut st_t) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let t = Instant::now();
        op.list_seeds(pb::ListSeedsRequest::default()).await?;
        ops_t.push(t.elapsed());
        let t = Instant::now();
        dp.claim_work(pb::ClaimWorkRequest { request_id: seedship_e2e::rid() }).await?;
        st_t.push(t.elapsed());
    }
    let (op_med, st_med) = (median(ops_t.clone()), median(st_t.clone()));
    let worst = ops_t.iter().chain(&st_t).max().copied().unwrap_or_default();
    let n = refused.load(Ordering::Relaxed);
    eprintln!("operator median {op_med:?}, station median {st_med:?}, slowest {worst:?}; {n} of 750 refused at once");
    // Without per-identity shares the operator's median was 8.1 s (the request timeout).
    assert!(op_med < Duration::from_millis(500), "operator median {op_med:?}: {ops_t:?}");
    assert!(st_med < Duration::from_millis(500), "station median {st_med:?}: {st_t:?}");
    assert!(worst < Duration::from_secs(2), "slowest call {worst:?}");
    // The flooder itself was told, at once, that its share is full.
    assert!(n >= 600, "only {n} of 750 stalled requests were refused at once");
    flood.abort_all();
    c.finish()
}
