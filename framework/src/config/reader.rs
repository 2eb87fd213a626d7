//! Turns the libconfig tree of `gala-gopher.conf` into a [`Config`], section by section: absent
//! keys keep their defaults, present ones are type- and range-checked, unknown ones are reported.

use std::path::Path;

use gala_meta::libconfig::{Group, Setting, Value};

use super::error::{ConfigError, Origin, Problem, Result};
use super::{check, Config, Origins};

/// Sections this version reads.
const SECTIONS: &[&str] = &[
    "global",
    "metric",
    "event",
    "meta",
    "imdb",
    "web_server",
    "rest_api_server",
    "kafka",
    "logs",
    "paths",
    "ingress",
    "supervisor",
    "container_runtimes",
];

/// Sections of older gala-gopher releases that no longer mean anything.
const OBSOLETE_SECTIONS: &[&str] = &["egress", "probes", "extend_probes"];

/// Keys of older gala-gopher releases that no longer mean anything.
const OBSOLETE_KEYS: &[(&str, &str)] = &[
    ("global", "pin_path"),
    ("global", "bpf_pin_path"),
    ("event", "desc_language"),
    ("ingress", "interval"),
];

/// What the file said: the configuration before environment overrides.
pub(super) struct FileRead {
    /// Defaults overlaid with the file's values.
    pub config: Config,
    /// Line of every key the file set.
    pub origins: Origins,
    /// Unknown and obsolete sections and keys.
    pub warnings: Vec<String>,
}

/// Reads every known section of `root` into a default [`Config`].
pub(super) fn read(root: &Group, path: &Path) -> Result<FileRead> {
    let mut ctx = Ctx {
        path,
        origins: Origins::default(),
        warnings: Vec::new(),
    };
    let mut config = Config::default();

    for setting in &root.settings {
        let Some(&name) = SECTIONS.iter().find(|known| **known == setting.name) else {
            ctx.warn_ignored(
                setting.line,
                &setting.name,
                OBSOLETE_SECTIONS.contains(&setting.name.as_str()),
                "section",
            );
            continue;
        };
        let Value::Group(group) = &setting.value.value else {
            return Err(ctx.error(
                setting.line,
                name.to_owned(),
                Problem::WrongType {
                    expected: "group",
                    found: setting.value.value.type_name(),
                },
            ));
        };
        let mut section = Section {
            ctx: &mut ctx,
            name,
            settings: &group.settings,
            used: vec![false; group.settings.len()],
        };
        match name {
            "global" => read_global(&mut section, &mut config)?,
            "metric" => {
                section.str("out_channel", &mut config.metric.out_channel, str::parse)?;
                section.str(
                    "kafka_topic",
                    &mut config.metric.kafka_topic,
                    check::kafka_topic,
                )?;
            }
            "event" => {
                section.str("out_channel", &mut config.event.out_channel, str::parse)?;
                section.str(
                    "kafka_topic",
                    &mut config.event.kafka_topic,
                    check::kafka_topic,
                )?;
                section.int("timeout", &mut config.event.timeout, |v| {
                    check::seconds(v, 0)
                })?;
            }
            "meta" => {
                section.str("out_channel", &mut config.meta.out_channel, str::parse)?;
                section.str(
                    "kafka_topic",
                    &mut config.meta.kafka_topic,
                    check::kafka_topic,
                )?;
            }
            "imdb" => read_imdb(&mut section, &mut config)?,
            "web_server" => {
                read_server(&mut section, &mut config.web_server.server)?;
                section.bool("legacy_histogram", &mut config.web_server.legacy_histogram)?;
            }
            "rest_api_server" => read_server(&mut section, &mut config.rest_api_server)?,
            "kafka" => read_kafka(&mut section, &mut config)?,
            "logs" => read_logs(&mut section, &mut config)?,
            "paths" => read_paths(&mut section, &mut config)?,
            "ingress" => {
                section.int("max_line_len", &mut config.ingress.max_line_len, |v| {
                    check::count(v, 1024, Some(16 << 20))
                })?;
            }
            "supervisor" => read_supervisor(&mut section, &mut config.supervisor)?,
            "container_runtimes" => {
                read_container_runtimes(&mut section, &mut config.container_runtimes)?
            }
            _ => {}
        }
        section.finish();
    }

    Ok(FileRead {
        config,
        origins: ctx.origins,
        warnings: ctx.warnings,
    })
}

fn read_global(section: &mut Section<'_, '_, '_>, config: &mut Config) -> Result<()> {
    let global = &mut config.global;
    section.str(
        "log_file_name",
        &mut global.log_file_name,
        check::log_file_name,
    )?;
    section.str("log_level", &mut global.log_level, str::parse)?;
    section.bool("rest_api_on", &mut global.rest_api_on)
}

fn read_imdb(section: &mut Section<'_, '_, '_>, config: &mut Config) -> Result<()> {
    let imdb = &mut config.imdb;
    section.int("max_tables_num", &mut imdb.max_tables_num, |v| {
        check::count(v, 1, Some(4096))
    })?;
    section.int("max_records_num", &mut imdb.max_records_num, |v| {
        check::count(v, 1, None)
    })?;
    section.int("max_metrics_num", &mut imdb.max_metrics_num, |v| {
        check::count(v, 1, Some(128))
    })?;
    section.int("record_timeout", &mut imdb.record_timeout, |v| {
        check::seconds(v, 1)
    })
}

fn read_supervisor(
    section: &mut Section<'_, '_, '_>,
    sup: &mut super::SupervisorConfig,
) -> Result<()> {
    let seconds_in =
        |max: i64| move |v: i64| check::int_in(v, 1, Some(max)).and_then(|v| check::seconds(v, 1));
    section.int("stop_grace", &mut sup.stop_grace, seconds_in(300))?;
    section.int(
        "restart_backoff_max",
        &mut sup.restart_backoff_max,
        seconds_in(3600),
    )?;
    section.int("failed_after", &mut sup.failed_after, |v| {
        check::int_in(v, 1, Some(100)).map(|v| v as u32)
    })?;
    section.int("stable_run", &mut sup.stable_run, seconds_in(3600))?;
    section.int("snooper_period", &mut sup.snooper_period, seconds_in(600))?;
    section.str("cgroup", &mut sup.cgroup, str::parse)
}

fn read_container_runtimes(
    section: &mut Section<'_, '_, '_>,
    runtimes: &mut super::ContainerRuntimesConfig,
) -> Result<()> {
    section.str("containerd", &mut runtimes.containerd, check::socket_path)?;
    section.str("docker", &mut runtimes.docker, check::socket_path)?;
    section.str("crio", &mut runtimes.crio, check::socket_path)?;
    section.str("isulad", &mut runtimes.isulad, check::socket_path)?;
    section.int("timeout_ms", &mut runtimes.timeout, |v| {
        check::int_in(v, 100, Some(10_000))
            .map(|ms| std::time::Duration::from_millis(ms.unsigned_abs()))
    })?;
    section.bool("cli", &mut runtimes.cli)
}

fn read_server(section: &mut Section<'_, '_, '_>, server: &mut super::ServerConfig) -> Result<()> {
    section.str("bind_addr", &mut server.bind_addr, check::bind_addr)?;
    section.int("port", &mut server.port, check::port)?;
    section.str("ssl_auth", &mut server.ssl_auth, check::on_off)?;
    section.str("private_key", &mut server.private_key, check::pem_path)?;
    section.str("cert_file", &mut server.cert_file, check::pem_path)?;
    section.str("ca_file", &mut server.ca_file, check::pem_path)
}

fn read_kafka(section: &mut Section<'_, '_, '_>, config: &mut Config) -> Result<()> {
    let kafka = &mut config.kafka;
    section.str("kafka_broker", &mut kafka.kafka_broker, check::kafka_broker)?;
    section.int("batch_num_messages", &mut kafka.batch_num_messages, |v| {
        check::kafka_number(v, 1_000_000)
    })?;
    section.str(
        "compression_codec",
        &mut kafka.compression_codec,
        check::compression_codec,
    )?;
    section.int(
        "queue_buffering_max_messages",
        &mut kafka.queue_buffering_max_messages,
        |v| check::kafka_number(v, i32::MAX.unsigned_abs()),
    )?;
    section.int(
        "queue_buffering_max_kbytes",
        &mut kafka.queue_buffering_max_kbytes,
        |v| check::kafka_number(v, i32::MAX.unsigned_abs()),
    )?;
    section.int(
        "queue_buffering_max_ms",
        &mut kafka.queue_buffering_max_ms,
        |v| check::kafka_number(v, 900_000),
    )
}

fn read_logs(section: &mut Section<'_, '_, '_>, config: &mut Config) -> Result<()> {
    let logs = &mut config.logs;
    section.int(
        "metric_total_size",
        &mut logs.metric_total_size,
        check::megabytes,
    )?;
    section.str("metric_dir", &mut logs.metric_dir, check::safe_path)?;
    section.str("event_dir", &mut logs.event_dir, check::safe_path)?;
    section.str("meta_dir", &mut logs.meta_dir, check::safe_path)?;
    section.str("debug_dir", &mut logs.debug_dir, check::safe_path)
}

fn read_paths(section: &mut Section<'_, '_, '_>, config: &mut Config) -> Result<()> {
    let paths = &mut config.paths;
    section.str("meta_dir", &mut paths.meta_dir, check::safe_path)?;
    section.str(
        "extend_probe_dir",
        &mut paths.extend_probe_dir,
        check::safe_path,
    )?;
    section.str("probes_init", &mut paths.probes_init, check::safe_path)?;
    section.str("custom_probes", &mut paths.custom_probes, check::safe_path)?;
    section.str("run_dir", &mut paths.run_dir, check::safe_path)?;
    section.str(
        "machine_id_file",
        &mut paths.machine_id_file,
        check::safe_path,
    )
}

/// State shared by all sections of one file.
struct Ctx<'p> {
    path: &'p Path,
    origins: Origins,
    warnings: Vec<String>,
}

impl Ctx<'_> {
    fn error(&self, line: u32, key: String, problem: Problem) -> ConfigError {
        ConfigError::invalid(
            Origin::File {
                path: self.path.to_owned(),
                line,
            },
            key,
            problem,
        )
    }

    fn warn_ignored(&mut self, line: u32, what: &str, obsolete: bool, kind: &str) {
        let path = self.path.display();
        let warning = if obsolete {
            format!("{path}:{line}: {kind} {what:?} of an older gala-gopher is obsolete, ignored")
        } else {
            format!("{path}:{line}: unknown {kind} {what:?}, ignored")
        };
        self.warnings.push(warning);
    }
}

/// One section being read; remembers which keys were looked at so the rest can be reported.
struct Section<'g, 'c, 'p> {
    ctx: &'c mut Ctx<'p>,
    name: &'static str,
    settings: &'g [Setting],
    used: Vec<bool>,
}

impl<'g> Section<'g, '_, '_> {
    /// The setting `key`, marked as used and recorded as coming from the file.
    fn take(&mut self, key: &'static str) -> Option<&'g Setting> {
        let index = self
            .settings
            .iter()
            .position(|setting| setting.name == key)?;
        self.used[index] = true;
        let setting = &self.settings[index];
        self.ctx.origins.set(
            self.name,
            key,
            Origin::File {
                path: self.ctx.path.to_owned(),
                line: setting.line,
            },
        );
        Some(setting)
    }

    fn error(&self, setting: &Setting, problem: Problem) -> ConfigError {
        self.ctx.error(
            setting.line,
            format!("{}.{}", self.name, setting.name),
            problem,
        )
    }

    fn wrong_type(&self, setting: &Setting, expected: &'static str) -> ConfigError {
        self.error(
            setting,
            Problem::WrongType {
                expected,
                found: setting.value.value.type_name(),
            },
        )
    }

    /// Stores the string `key`, converted by `convert`, into `slot` if the key is present.
    fn str<T>(
        &mut self,
        key: &'static str,
        slot: &mut T,
        convert: impl FnOnce(&str) -> Result<T, Problem>,
    ) -> Result<()> {
        let Some(setting) = self.take(key) else {
            return Ok(());
        };
        let Value::Str(text) = &setting.value.value else {
            return Err(self.wrong_type(setting, "string"));
        };
        *slot = convert(text).map_err(|problem| self.error(setting, problem))?;
        Ok(())
    }

    /// Stores the integer `key`, converted by `convert`, into `slot` if the key is present.
    fn int<T>(
        &mut self,
        key: &'static str,
        slot: &mut T,
        convert: impl FnOnce(i64) -> Result<T, Problem>,
    ) -> Result<()> {
        let Some(setting) = self.take(key) else {
            return Ok(());
        };
        let Value::Int(number) = setting.value.value else {
            return Err(self.wrong_type(setting, "int"));
        };
        *slot = convert(number).map_err(|problem| self.error(setting, problem))?;
        Ok(())
    }

    /// Stores the boolean `key` into `slot` if the key is present.
    fn bool(&mut self, key: &'static str, slot: &mut bool) -> Result<()> {
        let Some(setting) = self.take(key) else {
            return Ok(());
        };
        let Value::Bool(flag) = setting.value.value else {
            return Err(self.wrong_type(setting, "bool"));
        };
        *slot = flag;
        Ok(())
    }

    /// Reports every key of the section that no reader looked at.
    fn finish(self) {
        for (setting, used) in self.settings.iter().zip(&self.used) {
            if !used {
                let obsolete = OBSOLETE_KEYS.contains(&(self.name, setting.name.as_str()));
                let key = format!("{}.{}", self.name, setting.name);
                self.ctx.warn_ignored(setting.line, &key, obsolete, "key");
            }
        }
    }
}
