//! Load on the REST API: 50 concurrent clients doing PUT and GET for 30 s (set
//! `GOPHER_LOAD_SECS` to change it) get only documented answers, and the daemon's memory stays
//! flat. One probe runs and never reads its control channel while its params keep changing,
//! which must not make the daemon queue messages. Prints the figures of docs/benchmarks.md.
//! The test runs alone (`gate::exclusive`): its clients load both cores, which would take the
//! margins of the timing checks running beside it and skew its own figures.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gala_e2e::{http_request, own_meta, Sandbox};

const CLIENTS: usize = 50;

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The request a client sends at step `i`, and the answers it may get.
fn request(client: usize, i: usize) -> (&'static str, String, String, &'static [u16]) {
    let period = 5 + (client * 7 + i) % 595;
    match i % 5 {
        0 => (
            "PUT",
            "/mine".into(),
            format!(r#"json={{"params": {{"report_period": {period}}}}}"#),
            &[200],
        ),
        1 => ("GET", "/mine".into(), String::new(), &[200]),
        2 => (
            "PUT",
            "/tcp".into(),
            format!(
                r#"json={{"cmd": {{"probe": ["tcp_rtt"]}}, "blacklist": {{}}, "params": {{"report_period": {period}}}}}"#
            ),
            &[200],
        ),
        3 => (
            "PUT",
            "/tcp".into(),
            r#"json={"params": {"report_period": 1}}"#.into(),
            &[400],
        ),
        _ => ("GET", "/nosuch".into(), String::new(), &[404]),
    }
}

#[test]
fn fifty_clients_for_thirty_seconds() {
    let _alone = gala_e2e::gate::exclusive();
    let secs: u64 = std::env::var("GOPHER_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut sb = Sandbox::new();
    sb.add_custom_probe("mine", "#!/bin/sh\nexec sleep 3600\n", &own_meta("mine"));
    sb.write_probes_init("mine {\"state\": \"running\"}\n");
    sb.write_config(
        "max_tables_num = 16; max_records_num = 100; max_metrics_num = 16; record_timeout = 60;",
        "",
    );
    let d = sb.start();
    let port = sb.rest_port;
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let unexpected = Arc::new(Mutex::new(Vec::<String>::new()));
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, latencies, unexpected) =
                (stop.clone(), latencies.clone(), unexpected.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let (method, path, body, want) = request(c, i);
                    let t = Instant::now();
                    match http_request(port, method, &path, body.as_bytes()) {
                        Ok((status, text))
                            if want.contains(&status)
                                && (status != 200
                                    || method == "GET"
                                    || text.contains("success")) => {}
                        other => unexpected
                            .lock()
                            .unwrap()
                            .push(format!("{method} {path} {body}: {other:?}")),
                    }
                    mine.push(t.elapsed().as_micros() as u32);
                    i += 1;
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    // RSS once warmed up, then at the end.
    std::thread::sleep(Duration::from_secs(secs.min(5)));
    let warm = rss_kb(d.pid());
    std::thread::sleep(Duration::from_secs(secs.saturating_sub(5)));
    let end = rss_kb(d.pid());
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let unexpected = unexpected.lock().unwrap();
    assert!(
        unexpected.is_empty(),
        "{} unexpected answers, e.g. {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)]
    );
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!(
        "REST load: {CLIENTS} clients, {elapsed:.0} s, {} requests ({:.0}/s), latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms, RSS {:.1} MB warm -> {:.1} MB end",
        lat.len(),
        lat.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        warm as f64 / 1024.0,
        end as f64 / 1024.0
    );
    assert!(lat.len() > CLIENTS * 10, "too few requests: {}", lat.len());
    // Flat: allocator noise only, nothing that grows with the number of requests.
    assert!(
        end <= warm + 4 * 1024,
        "RSS grew from {warm} kB to {end} kB"
    );
    // The daemon still answers, and the probe still runs.
    assert_eq!(d.probe_json("mine")["runtime"]["status"], "running");
}

/// Stalled uploads to the REST port: 1,000 clients each send the head of a 1 MiB PUT and most
/// of its body, then stall. The listener serves 128 of them and refuses the rest at once, so
/// the daemon's memory stays under 200 MB and `/metrics` (its own listener) keeps answering
/// within a second; the ones served are answered 408 and closed within the body deadline
/// (`BODY_TIMEOUT`, 10 s), and REST answers again afterwards. Runs alone: 1,000 connections and
/// 600 MB through loopback load both cores.
#[test]
fn a_thousand_stalled_uploads_are_bounded_and_closed() {
    let _alone = gala_e2e::gate::exclusive();
    raise_fd_limit(4096);
    let mut sb = Sandbox::new();
    sb.add_custom_probe("mine", "#!/bin/sh\nexec sleep 3600\n", &own_meta("mine"));
    sb.write_config(
        "max_tables_num = 16; max_records_num = 100; max_metrics_num = 16; record_timeout = 60;",
        "",
    );
    let d = sb.start();
    let head = "PUT /mine HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\njson=";
    let part = vec![b' '; 600 * 1024];
    let started = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..1000 {
        let Ok(mut c) = TcpStream::connect(("127.0.0.1", sb.rest_port)) else {
            continue;
        };
        c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        // A refused connection is reset under our feet: that is the point.
        if c.write_all(head.as_bytes())
            .and_then(|()| c.write_all(&part))
            .is_ok()
        {
            conns.push(c);
        }
    }
    let rss_mb = rss_kb(d.pid()) / 1024;
    let t = Instant::now();
    let metrics = d.scrape();
    let scrape = t.elapsed();
    println!(
        "stalled uploads: {} of 1000 written in full, daemon RSS {rss_mb} MB, /metrics in {scrape:?}",
        conns.len()
    );
    assert!(rss_mb < 200, "daemon RSS {rss_mb} MB");
    assert!(scrape < Duration::from_secs(1), "/metrics took {scrape:?}");
    assert!(metrics.contains("gala_gopher_daemon_"), "{metrics}");
    // Every connection the daemon kept is closed once the body deadline has passed.
    let deadline = started + Duration::from_secs(10 + 5);
    let mut open = 0;
    for c in &mut conns {
        let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(50);
        c.set_read_timeout(Some(wait)).unwrap();
        let mut buf = Vec::new();
        match c.read_to_end(&mut buf) {
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                assert!(
                    text.is_empty()
                        || text.starts_with("HTTP/1.1 408")
                        || text.starts_with("HTTP/1.1 503"),
                    "{text}"
                );
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                open += 1
            }
            Err(_) => {}
        }
    }
    assert_eq!(open, 0, "connections still open after the body deadline");
    drop(conns);
    let (status, body) = d.put("mine", r#"{"state": "running"}"#);
    assert_eq!(status, 200, "{body}");
}

/// Raises this process's soft descriptor limit to `want` (or the hard limit).
fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = want.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}
