use super::*;
use crate::testutil::{demo_imdb, store};

fn render(imdb: &Imdb, legacy: bool) -> String {
    let mut r = ScrapeRenderer::new(imdb.registry(), "uuid-1.2.3.4", legacy);
    let mut out = Vec::new();
    r.render(imdb, 0, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn renders_families_with_help_type_and_labels() {
    let imdb = demo_imdb(10, 60_000);
    store(&imdb, "|demo_conn|c1|10|1.5|", 0).unwrap();
    let text = render(&imdb, false);
    assert_eq!(
        text,
        "# HELP gala_gopher_demo_conn_tx_bytes bytes sent\n\
         # TYPE gala_gopher_demo_conn_tx_bytes counter\n\
         gala_gopher_demo_conn_tx_bytes{conn=\"c1\",machine_id=\"uuid-1.2.3.4\"} 10\n\
         # HELP gala_gopher_demo_conn_srtt smoothed\\nround-trip \\\\ time\n\
         # TYPE gala_gopher_demo_conn_srtt gauge\n\
         gala_gopher_demo_conn_srtt{conn=\"c1\",machine_id=\"uuid-1.2.3.4\"} 1.5\n"
    );
}

#[test]
fn histograms_are_real_prometheus_histograms_plus_max() {
    let imdb = demo_imdb(10, 60_000);
    store(&imdb, "|demo_latency|80|GET|2 10 1 100 4 300 90|", 0).unwrap();
    let text = render(&imdb, false);
    let l = "port=\"80\",method=\"GET\",machine_id=\"uuid-1.2.3.4\"";
    let want = format!(
        "# HELP gala_gopher_demo_http_latency request latency in ms\n\
         # TYPE gala_gopher_demo_http_latency histogram\n\
         gala_gopher_demo_http_latency_bucket{{{l},le=\"10\"}} 1\n\
         gala_gopher_demo_http_latency_bucket{{{l},le=\"100\"}} 4\n\
         gala_gopher_demo_http_latency_bucket{{{l},le=\"+Inf\"}} 4\n\
         gala_gopher_demo_http_latency_sum{{{l}}} 300\n\
         gala_gopher_demo_http_latency_count{{{l}}} 4\n\
         # HELP gala_gopher_demo_http_latency_max request latency in ms (largest observed value)\n\
         # TYPE gala_gopher_demo_http_latency_max gauge\n\
         gala_gopher_demo_http_latency_max{{{l}}} 90\n"
    );
    assert_eq!(text, want);
}

#[test]
fn legacy_histograms_keep_the_original_form() {
    let imdb = demo_imdb(10, 60_000);
    store(&imdb, "|demo_latency|80|GET|1 10 1 7 7|", 0).unwrap();
    let text = render(&imdb, true);
    assert!(text.contains("\ngala_gopher_demo_http_latency{port=\"80\",method=\"GET\",machine_id=\"uuid-1.2.3.4\",le=\"10\"} 1\n"));
    assert!(text.contains("\ngala_gopher_demo_http_latency_sum{port=\"80\""));
    assert!(!text.contains("_count"));
    assert!(!text.contains("_bucket"));
    assert!(!text.contains("# TYPE gala_gopher_demo_http_latency "));
}

#[test]
fn null_values_and_labels_are_skipped_and_values_escaped() {
    let imdb = demo_imdb(10, 60_000);
    store(&imdb, "|demo_conn|a\"b\\c||(null)|", 0).unwrap();
    store(&imdb, "|demo_latency|81||1 10 1 7 7|", 0).unwrap();
    let text = render(&imdb, false);
    assert!(
        !text.contains("gala_gopher_demo_conn"),
        "all metrics null: {text}"
    );
    assert!(
        text.contains("{port=\"81\",machine_id=\"uuid-1.2.3.4\",le=\"10\"} 1"),
        "{text}"
    );
    store(&imdb, "|demo_conn|a\"b\\c|5||", 0).unwrap();
    let text = render(&imdb, false);
    assert!(text.contains("{conn=\"a\\\"b\\\\c\",machine_id="), "{text}");
}

#[test]
fn rendering_twice_gives_the_same_text() {
    let imdb = demo_imdb(10, 60_000);
    store(&imdb, "|demo_conn|c1|10|1.5|", 0).unwrap();
    let mut r = ScrapeRenderer::new(imdb.registry(), "m", false);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    r.render(&imdb, 0, &mut a);
    r.render(&imdb, 0, &mut b);
    assert_eq!(a, b);
}

/// The samples of one histogram series, in order, as `name value` pairs without labels.
fn latency_samples(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| l.starts_with("gala_gopher_demo_http_latency"))
        .map(|l| {
            let (name, rest) = l.split_once('{').unwrap();
            let le = rest
                .split_once("le=\"")
                .map(|(_, le)| format!("[{}]", &le[..le.find('"').unwrap()]))
                .unwrap_or_default();
            let value = l.rsplit_once(' ').unwrap().1;
            (format!("{name}{le}"), value.to_string())
        })
        .collect()
}

fn pairs(want: &[(&str, &str)]) -> Vec<(String, String)> {
    want.iter()
        .map(|(n, v)| (format!("gala_gopher_demo_http_latency{n}"), v.to_string()))
        .collect()
}

#[test]
fn histograms_add_up_every_report_and_never_decrease() {
    let imdb = demo_imdb(10, 60_000);
    let mut r = ScrapeRenderer::new(imdb.registry(), "m", false);
    let mut scrape = || {
        let mut out = Vec::new();
        r.render(&imdb, 0, &mut out);
        latency_samples(&String::from_utf8(out).unwrap())
    };
    store(
        &imdb,
        "|demo_latency|80|GET|3 10 2 100 5 1000 6 4213 950|",
        0,
    )
    .unwrap();
    let first = scrape();
    assert_eq!(first, scrape(), "a scrape adds nothing");
    // The next period observed fewer values: the per-record counts went down, the totals not.
    store(&imdb, "|demo_latency|80|GET|3 10 1 100 1 1000 1 7 7|", 0).unwrap();
    store(&imdb, "|demo_latency|80|GET|3 10 0 100 0 1000 0 0 0|", 0).unwrap();
    let third = scrape();
    assert_eq!(
        third,
        pairs(&[
            ("_bucket[10]", "3"),
            ("_bucket[100]", "6"),
            ("_bucket[1000]", "7"),
            ("_bucket[+Inf]", "7"),
            ("_sum", "4220"),
            ("_count", "7"),
            ("_max", "0"),
        ]),
        "_max is the latest report's"
    );
    for (a, b) in first.iter().zip(&third) {
        assert_eq!(a.0, b.0);
        if a.0.ends_with("_max") {
            continue;
        }
        let (a, b): (u64, u64) = (a.1.parse().unwrap(), b.1.parse().unwrap());
        assert!(b >= a, "{first:?} -> {third:?}");
    }
    // A null value adds nothing and leaves the totals exported; only `_max` goes.
    store(&imdb, "|demo_latency|80|GET|(null)|", 0).unwrap();
    let mut want = third.clone();
    want.pop();
    assert_eq!(scrape(), want);
    // Another series has its own totals.
    store(&imdb, "|demo_latency|81|GET|3 10 1 100 1 1000 1 2.5 2|", 0).unwrap();
    let text = render(&imdb, false);
    assert!(text.contains("{port=\"81\",method=\"GET\",machine_id=\"uuid-1.2.3.4\"} 2.5\n"));
    assert!(text.contains("{port=\"80\",method=\"GET\",machine_id=\"uuid-1.2.3.4\"} 4220\n"));
}

#[test]
fn other_bucket_bounds_restart_the_histogram() {
    let imdb = demo_imdb(10, 60_000);
    store(&imdb, "|demo_latency|80|GET|2 10 2 100 5 40 30|", 0).unwrap();
    store(&imdb, "|demo_latency|80|GET|2 10 2 100 5 40 30|", 0).unwrap();
    store(&imdb, "|demo_latency|80|GET|2 20 1 200 3 90 60|", 0).unwrap();
    assert_eq!(
        latency_samples(&render(&imdb, false)),
        pairs(&[
            ("_bucket[20]", "1"),
            ("_bucket[200]", "3"),
            ("_bucket[+Inf]", "3"),
            ("_sum", "90"),
            ("_count", "3"),
            ("_max", "60"),
        ])
    );
}

#[test]
fn legacy_histograms_show_the_latest_report_only() {
    let imdb = demo_imdb(10, 60_000);
    store(&imdb, "|demo_latency|80|GET|2 10 2 100 5 40 30|", 0).unwrap();
    store(&imdb, "|demo_latency|80|GET|2 10 1 100 1 3 3|", 0).unwrap();
    let text = render(&imdb, true);
    assert_eq!(
        latency_samples(&text),
        pairs(&[
            ("[10]", "1"),
            ("[100]", "1"),
            ("[+Inf]", "1"),
            ("_sum", "3"),
            ("_max", "3")
        ])
    );
    assert!(
        !text.contains("# TYPE gala_gopher_demo_http_latency"),
        "{text}"
    );
}

#[test]
fn max_is_a_gauge_family_of_its_own_with_help_and_type() {
    let imdb = demo_imdb(10, 60_000);
    store(&imdb, "|demo_latency|80|GET|1 10 1 5 5|", 0).unwrap();
    store(&imdb, "|demo_latency|81|PUT|1 10 1 9 9|", 0).unwrap();
    let text = render(&imdb, false);
    let lines: Vec<&str> = text.lines().collect();
    let help =
        "# HELP gala_gopher_demo_http_latency_max request latency in ms (largest observed value)";
    let at = lines.iter().position(|l| *l == help).expect("max HELP");
    assert_eq!(
        lines[at + 1],
        "# TYPE gala_gopher_demo_http_latency_max gauge"
    );
    // Both series' `_max` follow their header, after every sample of the histogram family.
    let max: Vec<&str> = lines[at + 2..].to_vec();
    assert_eq!(max.len(), 2, "{text}");
    assert!(max
        .iter()
        .all(|l| l.starts_with("gala_gopher_demo_http_latency_max{")));
    assert!(lines[..at].iter().all(|l| !l.contains("_max")));
}

/// Each scrape hands the families' buffers over and gets them back once the response is
/// dropped, within the budget: the text is the same scrape after scrape, and beyond the
/// budget nothing is kept.
#[test]
fn family_buffers_come_back_within_the_budget_and_the_text_stays_the_same() {
    let imdb = demo_imdb(5000, 60_000);
    for i in 0..3000 {
        store(&imdb, &format!("|demo_conn|c{i}|{i}|1.5|"), 0).unwrap();
        store(
            &imdb,
            &format!("|demo_latency|{i}|GET|2 10 1 100 4 300 90|"),
            0,
        )
        .unwrap();
    }
    let want = render(&imdb, false);
    assert!(want.len() > 500_000, "{}", want.len());
    for limit in [KEEP_BUFFERS, 0] {
        let mut r = ScrapeRenderer::new(imdb.registry(), "uuid-1.2.3.4", false);
        r.keep = Arc::new(KeepBudget {
            limit,
            held: AtomicUsize::new(0),
        });
        for _ in 0..3 {
            let mut chunks = Chunks::new();
            r.render_chunks(&imdb, 0, &mut chunks);
            assert!(r.keep.held.load(Ordering::Acquire) == 0, "handed over");
            assert_eq!(String::from_utf8(chunks.concat()).unwrap(), want);
            let held = r.keep.held.load(Ordering::Acquire);
            let spares = r
                .parts
                .iter()
                .flat_map(|p| &p.bodies)
                .filter(|b| b.spare.lock().is_some())
                .count();
            if limit == 0 {
                assert_eq!((held, spares), (0, 0));
            } else {
                assert!(
                    held > 400_000 && spares >= 2,
                    "{held} bytes in {spares} spares"
                );
            }
        }
    }
}

#[test]
fn a_table_split_across_threads_renders_every_series_once_with_families_whole() {
    let n = PARALLEL_FROM * 2 + 7;
    let imdb = demo_imdb(n + 1, 60_000);
    for i in 0..n {
        store(&imdb, &format!("|demo_conn|c{i}|{i}|1.5|"), 0).unwrap();
        store(&imdb, &format!("|demo_latency|{i}|GET|1 10 1 7 7|"), 0).unwrap();
    }
    let mut r = ScrapeRenderer::new(imdb.registry(), "m", false);
    r.parts.truncate(1);
    r.parts.extend((0..3).map(|_| Part::new(r.families.len())));
    let mut out = Vec::new();
    r.render(&imdb, 0, &mut out);
    let text = String::from_utf8(out).unwrap();
    // Each family's samples in one run right after its only header.
    let mut families = Vec::new();
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let name = help.split(' ').next().unwrap();
            assert!(!families.contains(&name), "{name} split in two runs");
            families.push(name);
        } else if !line.starts_with('#') {
            assert!(line.starts_with(families.last().unwrap()), "{line}");
        }
    }
    let tx: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with("gala_gopher_demo_conn_tx_bytes{"))
        .collect();
    assert_eq!(tx.len(), n);
    for (i, line) in tx.iter().enumerate() {
        assert_eq!(
            *line,
            format!("gala_gopher_demo_conn_tx_bytes{{conn=\"c{i}\",machine_id=\"m\"}} {i}")
        );
    }
    let counts = text
        .lines()
        .filter(|l| l.starts_with("gala_gopher_demo_http_latency_count{"));
    assert_eq!(counts.count(), n);
    let mut again = Vec::new();
    r.render(&imdb, 0, &mut again);
    assert_eq!(
        text.as_bytes(),
        again,
        "the kept buffers render the same text"
    );
}
