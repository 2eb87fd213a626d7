//! Tests of the configuration module: shipped file, every error class, env overrides, fuzzing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const PATH: &str = "/etc/gala-gopher/gala-gopher.conf";
const SHIPPED: &str = include_str!("../../../config/gala-gopher.conf");

fn parse(src: &str) -> Result<Loaded> {
    Config::parse(src, Path::new(PATH), &|_| None)
}

fn parse_env(src: &str, vars: &[(&str, &str)]) -> Result<Loaded> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::parse(src, Path::new(PATH), &|var| vars.get(var).cloned())
}

fn config(src: &str) -> Config {
    match parse(src) {
        Ok(loaded) => loaded.config,
        Err(err) => panic!("unexpected error: {err}"),
    }
}

fn error(src: &str) -> ConfigError {
    match parse(src) {
        Ok(loaded) => panic!("expected an error, got {loaded:?}"),
        Err(err) => err,
    }
}

fn env_error(src: &str, vars: &[(&str, &str)]) -> ConfigError {
    match parse_env(src, vars) {
        Ok(loaded) => panic!("expected an error, got {loaded:?}"),
        Err(err) => err,
    }
}

fn env_config(src: &str, vars: &[(&str, &str)]) -> Loaded {
    match parse_env(src, vars) {
        Ok(loaded) => loaded,
        Err(err) => panic!("unexpected error: {err}"),
    }
}

fn problem(err: &ConfigError) -> &Problem {
    match err {
        ConfigError::Invalid { problem, .. } => problem,
        other => panic!("expected an invalid value, got {other:?}"),
    }
}

// ---- shipped file and defaults -------------------------------------------------------------

#[test]
fn shipped_file_equals_default() {
    let loaded = parse(SHIPPED).expect("shipped config must load");
    assert_eq!(loaded.config, Config::default());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn shipped_file_documents_every_key() {
    // Every setting line is preceded by a comment line.
    let lines: Vec<&str> = SHIPPED.lines().map(str::trim).collect();
    for (index, line) in lines.iter().enumerate() {
        let is_setting = line.contains(" = ") && line.ends_with(';') && !line.starts_with('#');
        if is_setting {
            assert!(
                index > 0 && lines[index - 1].starts_with('#'),
                "no comment above {line:?}"
            );
        }
    }
}

#[test]
fn default_values_are_the_shipped_ones() {
    let c = Config::default();
    assert_eq!(c.global.log_file_name, "gopher.log");
    assert_eq!(c.global.log_level, LogLevel::Info);
    assert!(c.global.rest_api_on);
    assert_eq!(c.metric.out_channel, MetricChannel::WebServer);
    assert_eq!(c.event.timeout, Duration::from_secs(600));
    assert_eq!(c.imdb.record_timeout, Duration::from_secs(60));
    assert_eq!(c.web_server.server.port, 8888);
    assert!(!c.web_server.legacy_histogram);
    assert_eq!(c.rest_api_server.port, 9999);
    assert_eq!(c.kafka.kafka_broker, "");
    assert_eq!(c.logs.metric_total_size, 100 * 1024 * 1024);
    assert_eq!(
        c.paths.pid_file(),
        PathBuf::from("/var/run/gala_gopher/gala-gopher.pid")
    );
    assert_eq!(
        c.paths.cmd_socket(),
        PathBuf::from("/var/run/gala_gopher/gala_gopher_cmd.sock")
    );
    assert_eq!(c.ingress.max_line_len, 65_536);
    assert_eq!(
        c.debug_log_file(),
        PathBuf::from("/var/log/gala-gopher/debug/gopher.log")
    );
}

#[test]
fn empty_file_and_missing_keys_take_defaults() {
    assert_eq!(config(""), Config::default());
    let c = config("imdb = { max_tables_num = 8; }; web_server = { port = 8080; };");
    assert_eq!(c.imdb.max_tables_num, 8);
    assert_eq!(c.imdb.max_records_num, 16384);
    assert_eq!(c.web_server.server.port, 8080);
    assert_eq!(c.web_server.server.bind_addr, "127.0.0.1");
    assert_eq!(c.rest_api_server, ServerConfig::rest_api_default());
}

/// A configuration as the original shipped it (with its obsolete keys) keeps working.
#[test]
fn original_config_loads_with_warnings_only() {
    let src = r#"
global = { log_file_name = "gopher.log"; log_level = "debug"; pin_path = "/sys/fs/bpf/probe"; rest_api_on = true; };
metric = { out_channel = "logs"; kafka_topic = "gala_gopher"; };
event = { out_channel = ""; kafka_topic = "gala_gopher_event"; timeout = 0; desc_language = "zh_CN"; };
meta = { out_channel = "logs"; kafka_topic = "gala_gopher_metadata"; };
egress = { interval = 5; time_range = 5; };
imdb = { max_tables_num = 1024; max_records_num = 1024; max_metrics_num = 64; record_timeout = 60; };
web_server = { bind_addr = "127.0.0.1"; port = 8888; ssl_auth = "off"; private_key = ""; cert_file = ""; ca_file = ""; };
rest_api_server = { bind_addr = "127.0.0.1"; port = 9999; ssl_auth = "off"; private_key = ""; cert_file = ""; ca_file = ""; };
kafka = { kafka_broker = ""; batch_num_messages = 10000; compression_codec = "none";
          queue_buffering_max_messages = 100000; queue_buffering_max_kbytes = 1048576; queue_buffering_max_ms = 5; };
logs = { metric_total_size = 100; metric_dir = "/var/log/gala-gopher/metrics"; event_dir = "/var/log/gala-gopher/event";
         meta_dir = "/var/log/gala-gopher/meta"; debug_dir = "/var/log/gala-gopher/debug"; };
"#;
    let loaded = parse(src).expect("original config must load");
    let c = &loaded.config;
    assert_eq!(c.global.log_level, LogLevel::Debug);
    assert_eq!(c.metric.out_channel, MetricChannel::Logs);
    assert_eq!(c.event.out_channel, EventChannel::Off);
    assert_eq!(c.event.timeout, Duration::ZERO);
    assert_eq!(loaded.warnings.len(), 3, "{:?}", loaded.warnings);
    assert_eq!(
        loaded.warnings[0],
        format!("{PATH}:2: key \"global.pin_path\" of an older gala-gopher is obsolete, ignored")
    );
    assert!(
        loaded.warnings[2].starts_with(&format!("{PATH}:6: section \"egress\"")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn keyword_values() {
    let c = config(
        r#"global = { log_level = "error"; log_file_name = ""; rest_api_on = false; };
        metric = { out_channel = "json"; }; meta = { out_channel = "off"; };
        web_server = { ssl_auth = ""; legacy_histogram = true; };"#,
    );
    assert_eq!(c.global.log_level, LogLevel::Error);
    assert_eq!(c.global.log_file_name, "gopher_debug.log");
    assert!(!c.global.rest_api_on);
    assert_eq!(c.metric.out_channel, MetricChannel::Json);
    assert_eq!(c.meta.out_channel, EventChannel::Off);
    assert!(!c.web_server.server.ssl_auth);
    assert!(c.web_server.legacy_histogram);
    assert_eq!(
        config(r#"metric = { out_channel = ""; };"#)
            .metric
            .out_channel,
        MetricChannel::Off
    );
    assert_eq!(
        config("logs = { metric_total_size = 1024; };")
            .logs
            .metric_total_size,
        1 << 30
    );
}

#[test]
fn kafka_broker_is_not_truncated() {
    let broker = "broker-number-one.example.com:9092,broker-number-two.example.com:9092";
    let c = config(&format!(
        r#"kafka = {{ kafka_broker = "{broker}"; }}; event = {{ out_channel = "kafka"; }};"#
    ));
    assert_eq!(c.kafka.kafka_broker, broker);
    assert_eq!(c.event.out_channel, EventChannel::Kafka);
}

// ---- error classes -------------------------------------------------------------------------

#[test]
fn syntax_error_names_file_and_line() {
    let err = error("global =\n{\n    log_level = \"info\"\n    oops oops;\n};\n");
    match &err {
        ConfigError::Syntax { path, line, .. } => {
            assert_eq!(path, Path::new(PATH));
            assert_eq!(*line, 4);
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("{PATH}:4: syntax error: ")),
        "{err}"
    );
}

#[test]
fn duplicate_key_is_a_syntax_error() {
    let err = error("imdb = {\n max_tables_num = 1;\n max_tables_num = 2;\n};");
    assert!(matches!(err, ConfigError::Syntax { line: 3, .. }), "{err}");
}

#[test]
fn out_of_range_message_matches_contract() {
    let src = format!(
        "{}imdb =\n{{\n    max_tables_num = 5000;\n}};\n",
        "\n".repeat(14)
    );
    let err = error(&src);
    assert_eq!(
        err.to_string(),
        format!("{PATH}:17: imdb.max_tables_num: 5000 is out of range 1..=4096")
    );
}

#[test]
fn wrong_type_is_an_error() {
    let err = error("web_server =\n{\n    port = \"8888\";\n};");
    assert_eq!(
        err.to_string(),
        format!("{PATH}:3: web_server.port: expected int, found string")
    );
    let err = error("global = { rest_api_on = \"yes\"; };");
    assert_eq!(
        problem(&err),
        &Problem::WrongType {
            expected: "bool",
            found: "string"
        }
    );
    let err = error("imdb = { record_timeout = 1.5; };");
    assert_eq!(
        problem(&err),
        &Problem::WrongType {
            expected: "int",
            found: "float"
        }
    );
    let err = error("global = 5;");
    assert_eq!(
        err.to_string(),
        format!("{PATH}:1: global: expected group, found int")
    );
    let err = error("logs = { metric_dir = (\"/a\"); };");
    assert_eq!(
        problem(&err),
        &Problem::WrongType {
            expected: "string",
            found: "list"
        }
    );
}

#[test]
fn ranges_are_checked_at_load() {
    let cases = [
        (
            "imdb = { max_tables_num = 0; };",
            "imdb.max_tables_num: 0 is out of range 1..=4096",
        ),
        (
            "imdb = { max_records_num = 0; };",
            "imdb.max_records_num: 0 is out of range 1..",
        ),
        (
            "imdb = { max_metrics_num = 129; };",
            "imdb.max_metrics_num: 129 is out of range 1..=128",
        ),
        (
            "imdb = { record_timeout = 0; };",
            "imdb.record_timeout: 0 is out of range 1..",
        ),
        (
            "supervisor = { stop_grace = 301; };",
            "supervisor.stop_grace: 301 is out of range 1..=300",
        ),
        (
            "supervisor = { failed_after = 0; };",
            "supervisor.failed_after: 0 is out of range 1..=100",
        ),
        (
            "event = { timeout = -1; };",
            "event.timeout: -1 is out of range 0..",
        ),
        (
            "web_server = { port = 80; };",
            "web_server.port: 80 is out of range 1024..=65535",
        ),
        (
            "rest_api_server = { port = 65536; };",
            "rest_api_server.port: 65536 is out of range 1024..=65535",
        ),
        (
            "logs = { metric_total_size = 0; };",
            "logs.metric_total_size: 0 is out of range 1..=1024",
        ),
        (
            "logs = { metric_total_size = 2048; };",
            "logs.metric_total_size: 2048 is out of range 1..=1024",
        ),
        (
            "kafka = { batch_num_messages = 0; };",
            "kafka.batch_num_messages: 0 is out of range 1..=1000000",
        ),
        (
            "kafka = { queue_buffering_max_ms = 0; };",
            "kafka.queue_buffering_max_ms: 0 is out of range 1..=900000",
        ),
        (
            "kafka = { queue_buffering_max_kbytes = 3000000000; };",
            "kafka.queue_buffering_max_kbytes: 3000000000 is out of range 1..=2147483647",
        ),
        (
            "ingress = { max_line_len = 100; };",
            "ingress.max_line_len: 100 is out of range 1024..=16777216",
        ),
    ];
    for (src, expected) in cases {
        assert_eq!(
            error(src).to_string(),
            format!("{PATH}:1: {expected}"),
            "{src}"
        );
    }
}

#[test]
fn unknown_keywords_are_errors() {
    let err = error("global = { log_level = \"verbose\"; };");
    assert_eq!(
        err.to_string(),
        format!("{PATH}:1: global.log_level: unknown value \"verbose\", expected one of \"debug\", \"info\", \"warn\", \"error\"")
    );
    assert!(matches!(
        problem(&error("metric = { out_channel = \"prometheus\"; };")),
        Problem::UnknownValue { .. }
    ));
    assert!(matches!(
        problem(&error("event = { out_channel = \"json\"; };")),
        Problem::UnknownValue { .. }
    ));
    assert!(matches!(
        problem(&error("web_server = { ssl_auth = \"yes\"; };")),
        Problem::UnknownValue { .. }
    ));
    assert!(matches!(
        problem(&error("kafka = { compression_codec = \"brotli\"; };")),
        Problem::UnknownValue { .. }
    ));
}

#[test]
fn unsafe_characters_in_directories() {
    let err = error("logs = { metric_dir = \"/var/log/$(reboot)\"; };");
    assert_eq!(
        problem(&err),
        &Problem::UnsafeCharacters {
            value: "/var/log/$(reboot)".to_owned(),
            found: "$".to_owned()
        }
    );
    for bad in [
        "/var/log/../etc",
        "/tmp/./x",
        "/a;b",
        "/a|b",
        "/a\\nb",
        "/a*",
        "/a`b`",
        "/a[1]",
        "/a!",
        "/x'y",
    ] {
        let src = format!("logs = {{ event_dir = \"{bad}\"; }};");
        assert!(
            matches!(problem(&error(&src)), Problem::UnsafeCharacters { .. }),
            "{bad}"
        );
    }
    assert_eq!(
        problem(&error("logs = { debug_dir = \"\"; };")),
        &Problem::Empty
    );
    assert!(matches!(
        problem(&error("logs = { meta_dir = \"var/log\"; };")),
        Problem::NotAbsolute(_)
    ));
    assert!(matches!(
        problem(&error("logs = { metric_dir = \"/\"; };")),
        Problem::Malformed { .. }
    ));
    assert!(matches!(
        problem(&error("paths = { run_dir = \"/run/$x\"; };")),
        Problem::UnsafeCharacters { .. }
    ));
    assert!(matches!(
        problem(&error("global = { log_file_name = \"../x.log\"; };")),
        Problem::UnsafeCharacters { .. }
    ));
    assert!(matches!(
        problem(&error("global = { log_file_name = \"sub/x.log\"; };")),
        Problem::Malformed { .. }
    ));
}

#[test]
fn malformed_strings() {
    assert!(matches!(
        problem(&error("web_server = { bind_addr = \"not an addr\"; };")),
        Problem::Malformed { .. }
    ));
    assert_eq!(
        problem(&error("web_server = { bind_addr = \"\"; };")),
        &Problem::Empty
    );
    assert!(matches!(
        problem(&error("metric = { kafka_topic = \"a b\"; };")),
        Problem::Malformed { .. }
    ));
    assert!(matches!(
        problem(&error("kafka = { kafka_broker = \"a:1,,b:2\"; };")),
        Problem::Malformed { .. }
    ));
    let c = config("web_server = { bind_addr = \"::1\"; }; rest_api_server = { bind_addr = \"node-1.local\"; };");
    assert_eq!(c.web_server.server.bind_addr, "::1");
    assert_eq!(c.rest_api_server.bind_addr, "node-1.local");
}

#[test]
fn unknown_sections_and_keys_are_warnings() {
    let loaded =
        parse("global =\n{\n    log_levle = \"debug\";\n};\nextra = { a = 1; };\n").expect("loads");
    assert_eq!(loaded.config, Config::default());
    assert_eq!(
        loaded.warnings,
        vec![
            format!("{PATH}:3: unknown key \"global.log_levle\", ignored"),
            format!("{PATH}:5: unknown section \"extra\", ignored"),
        ]
    );
}

#[test]
fn tls_needs_key_and_cert() {
    let err =
        error("web_server =\n{\n    ssl_auth = \"on\";\n    private_key = \"/etc/k.pem\";\n};");
    assert_eq!(
        err.to_string(),
        format!("{PATH}:3: web_server.cert_file: required when web_server.ssl_auth is \"on\"")
    );
    let err = error("rest_api_server = { ssl_auth = \"on\"; cert_file = \"/etc/c.pem\"; };");
    assert_eq!(err.to_string(), format!("{PATH}:1: rest_api_server.private_key: required when rest_api_server.ssl_auth is \"on\""));
    let c =
        config("web_server = { ssl_auth = \"on\"; private_key = \"/k\"; cert_file = \"/c\"; };");
    assert!(c.web_server.server.ssl_auth);
    assert_eq!(c.web_server.server.ca_file, PathBuf::new());
}

#[test]
fn kafka_channel_needs_broker_and_topic() {
    let err = error("meta =\n{\n    out_channel = \"kafka\";\n};");
    assert_eq!(
        err.to_string(),
        format!("{PATH}:3: kafka.kafka_broker: required when meta.out_channel is \"kafka\"")
    );
    let err = error("kafka = { kafka_broker = \"k:9092\"; }; metric = { out_channel = \"kafka\"; kafka_topic = \"\"; };");
    assert_eq!(
        err.to_string(),
        format!("{PATH}:1: metric.kafka_topic: required when metric.out_channel is \"kafka\"")
    );
}

#[test]
fn same_port_for_both_servers_is_a_conflict() {
    let err = error("rest_api_server = { port = 8888; };");
    assert!(matches!(problem(&err), Problem::Conflict(_)), "{err}");
    assert!(err.to_string().starts_with(&format!(
        "{PATH}:1: rest_api_server.port: conflicts with web_server.port"
    )));
    // Different addresses, or the REST server off: no conflict.
    config("rest_api_server = { port = 8888; bind_addr = \"127.0.0.2\"; };");
    config("global = { rest_api_on = false; }; rest_api_server = { port = 8888; };");
    assert!(matches!(
        problem(&error(
            "web_server = { port = 9999; bind_addr = \"0.0.0.0\"; };"
        )),
        Problem::Conflict(_)
    ));
}

#[test]
fn load_reads_the_file_and_reports_missing_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gala-gopher.conf");
    std::fs::write(&path, "imdb = {\n  max_metrics_num = 500;\n};\n").expect("write");
    let err = Config::load(&path).expect_err("out of range");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2: imdb.max_metrics_num: 500 is out of range 1..=128",
            path.display()
        )
    );
    std::fs::write(&path, SHIPPED).expect("write");
    assert_eq!(
        Config::load(&path).expect("loads").config,
        Config::default()
    );

    let missing = dir.path().join("missing.conf");
    let err = Config::load(&missing).expect_err("missing file");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().starts_with(&format!(
            "{}: cannot read configuration: ",
            missing.display()
        )),
        "{err}"
    );
}

// ---- environment overrides -----------------------------------------------------------------

#[test]
fn env_overrides_apply_after_the_file() {
    let loaded = env_config(
        SHIPPED,
        &[
            ("GOPHER_LOG_LEVEL", "warn"),
            ("GOPHER_EVENT_CHANNEL", "kafka"),
            ("GOPHER_META_CHANNEL", "kafka"),
            ("GOPHER_KAKFA_SERVER", "kafka.svc"),
            ("GOPHER_METRIC_ADDR", "0.0.0.0"),
            ("GOPHER_METRIC_PORT", "18888"),
            ("GOPHER_REST_ADDR", "10.0.0.1"),
            ("GOPHER_REST_PORT", "19999"),
            ("GOPHER_METRIC_LOGS_TOTAL_SIZE", "10"),
        ],
    );
    let c = loaded.config;
    assert_eq!(c.global.log_level, LogLevel::Warn);
    assert_eq!(c.event.out_channel, EventChannel::Kafka);
    assert_eq!(c.meta.out_channel, EventChannel::Kafka);
    assert_eq!(c.kafka.kafka_broker, "kafka.svc:9092");
    assert_eq!(c.web_server.server.bind_addr, "0.0.0.0");
    assert_eq!(c.web_server.server.port, 18888);
    assert_eq!(c.rest_api_server.bind_addr, "10.0.0.1");
    assert_eq!(c.rest_api_server.port, 19999);
    assert_eq!(c.logs.metric_total_size, 10 * 1024 * 1024);
    assert!(loaded.warnings.is_empty());
}

#[test]
fn env_kafka_server_spellings() {
    let broker = |vars: &[(&str, &str)]| {
        env_config("kafka = { kafka_broker = \"file:1\"; };", vars)
            .config
            .kafka
            .kafka_broker
    };
    assert_eq!(
        broker(&[]),
        "file:1",
        "unset keeps the file value, no localhost default"
    );
    assert_eq!(
        broker(&[("GOPHER_KAKFA_SERVER", "")]),
        "file:1",
        "empty counts as unset"
    );
    assert_eq!(broker(&[("GOPHER_KAKFA_SERVER", "typo:9093")]), "typo:9093");
    assert_eq!(broker(&[("GOPHER_KAFKA_SERVER", "a,b:1")]), "a:9092,b:1");
    assert_eq!(
        broker(&[
            ("GOPHER_KAKFA_SERVER", "typo"),
            ("GOPHER_KAFKA_SERVER", "right")
        ]),
        "right:9092"
    );
    let loaded = env_config(
        "",
        &[
            ("GOPHER_KAKFA_SERVER", "typo"),
            ("GOPHER_KAFKA_SERVER", "right"),
        ],
    );
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert_eq!(Config::default().kafka.kafka_broker, "");
    assert_eq!(env_config("", &[]).config.kafka.kafka_broker, "");
}

#[test]
fn env_kafka_server_completes_a_kafka_channel() {
    let c = env_config(
        "event = { out_channel = \"kafka\"; };",
        &[("GOPHER_KAKFA_SERVER", "k")],
    )
    .config;
    assert_eq!(c.kafka.kafka_broker, "k:9092");
    let err = env_error("", &[("GOPHER_EVENT_CHANNEL", "kafka")]);
    assert_eq!(
        err.to_string(),
        "environment variable GOPHER_EVENT_CHANNEL: kafka.kafka_broker: required when event.out_channel is \"kafka\""
    );
}

#[test]
fn env_invalid_values_name_the_variable() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "GOPHER_METRIC_PORT",
            "abc",
            "web_server.port: \"abc\" is not an integer",
        ),
        (
            "GOPHER_REST_PORT",
            "80",
            "rest_api_server.port: 80 is out of range 1024..=65535",
        ),
        (
            "GOPHER_LOG_LEVEL",
            "verbose",
            "global.log_level: unknown value \"verbose\"",
        ),
        (
            "GOPHER_META_CHANNEL",
            "web_server",
            "meta.out_channel: unknown value \"web_server\"",
        ),
        (
            "GOPHER_METRIC_LOGS_TOTAL_SIZE",
            "0",
            "logs.metric_total_size: 0 is out of range 1..=1024",
        ),
        (
            "GOPHER_METRIC_ADDR",
            "a b",
            "web_server.bind_addr: \"a b\" is invalid",
        ),
        (
            "GOPHER_KAKFA_SERVER",
            "a b",
            "kafka.kafka_broker: \"a b\" is invalid",
        ),
        (
            "GOPHER_REST_AUTH",
            "true",
            "rest_api_server.ssl_auth: unknown value \"true\", expected one of \"yes\", \"no\"",
        ),
    ];
    for (var, value, expected) in cases {
        let err = env_error(SHIPPED, &[(var, value)]);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("environment variable {var}: {expected}")),
            "{var}={value}: {text}"
        );
        assert!(
            matches!(&err, ConfigError::Invalid { origin: Origin::Env { var: v }, .. } if v == var)
        );
    }
}

#[test]
fn env_rest_auth_touches_only_the_rest_server() {
    let c = env_config(
        SHIPPED,
        &[
            ("GOPHER_REST_AUTH", "yes"),
            ("GOPHER_REST_PRIVATE_KEY", "/etc/tls/key.pem"),
            ("GOPHER_REST_CERT", "/etc/tls/cert.pem"),
            ("GOPHER_REST_CAFILE", "/etc/tls/ca.pem"),
        ],
    )
    .config;
    assert!(c.rest_api_server.ssl_auth);
    assert_eq!(
        c.rest_api_server.private_key,
        PathBuf::from("/etc/tls/key.pem")
    );
    assert_eq!(
        c.rest_api_server.cert_file,
        PathBuf::from("/etc/tls/cert.pem")
    );
    assert_eq!(c.rest_api_server.ca_file, PathBuf::from("/etc/tls/ca.pem"));
    assert_eq!(c.web_server, WebServerConfig::default());
}

#[test]
fn env_rest_auth_without_files_is_an_error() {
    let err = env_error(
        SHIPPED,
        &[("GOPHER_REST_AUTH", "yes"), ("GOPHER_REST_CERT", "/c.pem")],
    );
    assert_eq!(
        err.to_string(),
        "environment variable GOPHER_REST_AUTH: rest_api_server.private_key: required when rest_api_server.ssl_auth is \"on\""
    );
    // Files named in the config file complete the variable.
    let src = "rest_api_server = { private_key = \"/k.pem\"; cert_file = \"/c.pem\"; };";
    assert!(
        env_config(src, &[("GOPHER_REST_AUTH", "yes")])
            .config
            .rest_api_server
            .ssl_auth
    );
}

#[test]
fn env_tls_files_without_rest_auth_are_ignored_with_a_warning() {
    for auth in [None, Some("no")] {
        let mut vars = vec![("GOPHER_REST_CERT", "/c.pem")];
        vars.extend(auth.map(|value| ("GOPHER_REST_AUTH", value)));
        let loaded = env_config(SHIPPED, &vars);
        assert!(!loaded.config.rest_api_server.ssl_auth);
        assert_eq!(loaded.config.rest_api_server.cert_file, PathBuf::new());
        assert_eq!(
            loaded.warnings,
            vec!["GOPHER_REST_CERT is set but ignored: GOPHER_REST_AUTH is not \"yes\"".to_owned()]
        );
    }
}

#[test]
fn probes_init_override_follows_the_variable() {
    let none = probes_init_override(&|_| None);
    assert_eq!(none, None);
    let empty = probes_init_override(&|_| Some(String::new()));
    assert_eq!(empty, None);
    let content = probes_init_override(&|var| {
        (var == "GOPHER_PROBES_INIT").then(|| "tcp {\"cmd\":{}}".to_owned())
    });
    assert_eq!(content.as_deref(), Some("tcp {\"cmd\":{}}\n"));
}

// ---- robustness ----------------------------------------------------------------------------

/// Random variable values for every override, including the typo variable.
fn env_strategy() -> impl Strategy<Value = HashMap<String, String>> {
    let vars = prop::sample::subsequence(
        vec![
            "GOPHER_LOG_LEVEL",
            "GOPHER_EVENT_CHANNEL",
            "GOPHER_META_CHANNEL",
            "GOPHER_KAKFA_SERVER",
            "GOPHER_KAFKA_SERVER",
            "GOPHER_METRIC_ADDR",
            "GOPHER_METRIC_PORT",
            "GOPHER_REST_ADDR",
            "GOPHER_REST_PORT",
            "GOPHER_REST_AUTH",
            "GOPHER_REST_PRIVATE_KEY",
            "GOPHER_REST_CERT",
            "GOPHER_REST_CAFILE",
            "GOPHER_METRIC_LOGS_TOTAL_SIZE",
        ],
        0..4,
    );
    (
        vars,
        prop::collection::vec(
            prop_oneof![
                "[a-z0-9:.,/ -]{0,12}",
                "-?[0-9]{1,12}",
                Just("yes".to_owned())
            ],
            4,
        ),
    )
        .prop_map(|(vars, values)| vars.into_iter().map(str::to_owned).zip(values).collect())
}

/// The shipped file with one line replaced by random text, or random text spliced in.
fn mutated_config() -> impl Strategy<Value = String> {
    let lines = SHIPPED.lines().count();
    (
        0..lines,
        any::<bool>(),
        "\\PC{0,24}|[\"{}();=,#/*0-9a-z_ -]{0,24}",
    )
        .prop_map(|(at, replace, text)| {
            let mut out: Vec<String> = SHIPPED.lines().map(str::to_owned).collect();
            if replace {
                out[at] = text;
            } else {
                let line = &mut out[at];
                let cut = line
                    .char_indices()
                    .map(|(i, _)| i)
                    .nth(line.len() / 2)
                    .unwrap_or(0);
                line.insert_str(cut, &text);
            }
            out.join("\n")
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(src in "\\PC{0,200}") {
        let _ = Config::parse(&src, Path::new(PATH), &|_| None);
    }

    #[test]
    fn mutated_config_never_panics(src in mutated_config(), vars in env_strategy()) {
        // Every error says where the bad value came from.
        if let Err(err) = Config::parse(&src, Path::new(PATH), &|var| vars.get(var).cloned()) {
            let text = err.to_string();
            prop_assert!(text.starts_with(PATH) || text.starts_with("environment variable GOPHER_"), "{}", text);
        }
    }

    #[test]
    fn libconfig_shaped_text_never_panics(src in "([a-z_]{1,8} = (\\{|\\(|\"[^\"]{0,8}\"|-?[0-9]{1,20}|true|[0-9]\\.[0-9])[;,]?[ \n}\\)]?){0,20}") {
        let _ = Config::parse(&src, Path::new(PATH), &|_| None);
    }
}

#[test]
fn supervisor_section_sets_every_key() {
    let c = parse(
        "supervisor = { stop_grace = 2; restart_backoff_max = 8; failed_after = 3; \
         stable_run = 10; snooper_period = 1; cgroup = \"v1\"; };",
    )
    .unwrap()
    .config;
    assert_eq!(
        c.supervisor,
        SupervisorConfig {
            stop_grace: Duration::from_secs(2),
            restart_backoff_max: Duration::from_secs(8),
            failed_after: 3,
            stable_run: Duration::from_secs(10),
            snooper_period: Duration::from_secs(1),
            cgroup: CgroupMode::V1,
        }
    );
    let bad = parse("supervisor = { cgroup = \"v3\"; };")
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("supervisor.cgroup") && bad.contains("\"auto\""),
        "{bad}"
    );
}

#[test]
fn container_runtimes_section_sets_every_key() {
    let c = parse(
        "container_runtimes = { containerd = \"/tmp/c.sock\"; docker = \"\"; \
         crio = \"/run/crio/crio.sock\"; isulad = \"/run/isulad.sock\"; timeout_ms = 250; \
         cli = false; };",
    )
    .unwrap()
    .config;
    assert_eq!(
        c.container_runtimes,
        ContainerRuntimesConfig {
            containerd: Some(PathBuf::from("/tmp/c.sock")),
            docker: Some(PathBuf::new()),
            crio: Some(PathBuf::from("/run/crio/crio.sock")),
            isulad: Some(PathBuf::from("/run/isulad.sock")),
            timeout: Duration::from_millis(250),
            cli: false,
        }
    );
    assert_eq!(Config::default().container_runtimes.containerd, None);
    for (src, key, why) in [
        (
            "containerd = \"run/c.sock\";",
            "container_runtimes.containerd",
            "absolute",
        ),
        (
            "docker = \"/a/../b\";",
            "container_runtimes.docker",
            "unsafe",
        ),
        (
            "timeout_ms = 50;",
            "container_runtimes.timeout_ms",
            "out of range",
        ),
        ("cli = \"yes\";", "container_runtimes.cli", "expected bool"),
    ] {
        let err = parse(&format!("container_runtimes = {{\n {src} }};"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":2: ") && err.contains(key) && err.contains(why),
            "{src}: {err}"
        );
    }
}
