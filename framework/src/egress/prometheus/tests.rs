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
