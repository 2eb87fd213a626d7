//! `GOPHER_*` environment overrides of the container image, applied on top of the file.
//!
//! The original's entrypoint rewrote the file with `sed`; here each variable sets one key and is
//! validated like the file value, and an invalid value is an error naming the variable. As with
//! the entrypoint's `[[ -n ... ]]` tests, an empty variable counts as unset.

use super::error::{ConfigError, Origin, Problem, Result};
use super::{check, Config, Origins};

/// The entrypoint's (misspelt) broker variable, kept because it is the public name.
const KAKFA_SERVER: &str = "GOPHER_KAKFA_SERVER";
/// The correctly spelt broker variable; wins over [`KAKFA_SERVER`] when both are set.
const KAFKA_SERVER: &str = "GOPHER_KAFKA_SERVER";
/// TLS file variables that only take effect with `GOPHER_REST_AUTH=yes`.
const REST_TLS_VARS: [&str; 3] = [
    "GOPHER_REST_PRIVATE_KEY",
    "GOPHER_REST_CERT",
    "GOPHER_REST_CAFILE",
];

/// Content that should replace `probes.init`, from `GOPHER_PROBES_INIT`, ending in a newline as
/// the entrypoint's `echo` wrote it. `None` when the variable is unset or empty; whether the file
/// is then emptied (as the container entrypoint did) or kept is the daemon's decision.
pub fn probes_init_override(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let mut content = lookup(env, "GOPHER_PROBES_INIT")?;
    if !content.ends_with('\n') {
        content.push('\n');
    }
    Some(content)
}

/// The variable's value, or `None` when unset or empty.
fn lookup(env: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    env(var).filter(|value| !value.is_empty())
}

/// Applies every `GOPHER_*` override to `config`, recording the variable as the origin of each
/// key it sets. Pure apart from `env`, so tests pass a closure over a map.
pub(super) fn apply(
    config: &mut Config,
    origins: &mut Origins,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let mut over = Overrides { env, origins };

    over.set(
        "GOPHER_LOG_LEVEL",
        "global",
        "log_level",
        &mut config.global.log_level,
        str::parse,
    )?;
    over.set(
        "GOPHER_EVENT_CHANNEL",
        "event",
        "out_channel",
        &mut config.event.out_channel,
        str::parse,
    )?;
    over.set(
        "GOPHER_META_CHANNEL",
        "meta",
        "out_channel",
        &mut config.meta.out_channel,
        str::parse,
    )?;

    let broker_var = match (lookup(env, KAFKA_SERVER), lookup(env, KAKFA_SERVER)) {
        (Some(right), Some(typo)) => {
            if right != typo {
                warnings.push(format!("{KAFKA_SERVER} and {KAKFA_SERVER} are both set; using {KAFKA_SERVER}={right:?}"));
            }
            Some(KAFKA_SERVER)
        }
        (Some(_), None) => Some(KAFKA_SERVER),
        (None, Some(_)) => Some(KAKFA_SERVER),
        (None, None) => None,
    };
    if let Some(var) = broker_var {
        over.set(
            var,
            "kafka",
            "kafka_broker",
            &mut config.kafka.kafka_broker,
            check::kafka_broker_with_default_port,
        )?;
    }

    let web = &mut config.web_server.server;
    over.set(
        "GOPHER_METRIC_ADDR",
        "web_server",
        "bind_addr",
        &mut web.bind_addr,
        check::bind_addr,
    )?;
    over.set(
        "GOPHER_METRIC_PORT",
        "web_server",
        "port",
        &mut web.port,
        |v| check::port(check::int_text(v)?),
    )?;

    let rest = &mut config.rest_api_server;
    over.set(
        "GOPHER_REST_ADDR",
        "rest_api_server",
        "bind_addr",
        &mut rest.bind_addr,
        check::bind_addr,
    )?;
    over.set(
        "GOPHER_REST_PORT",
        "rest_api_server",
        "port",
        &mut rest.port,
        |v| check::port(check::int_text(v)?),
    )?;

    // Only rest_api_server: the entrypoint's sed also rewrote web_server's TLS paths (a bug).
    let rest_auth = lookup(env, "GOPHER_REST_AUTH");
    match rest_auth.as_deref() {
        Some("yes") => {
            over.set(
                "GOPHER_REST_AUTH",
                "rest_api_server",
                "ssl_auth",
                &mut rest.ssl_auth,
                |_| Ok(true),
            )?;
            let [key_var, cert_var, ca_var] = REST_TLS_VARS;
            over.set(
                key_var,
                "rest_api_server",
                "private_key",
                &mut rest.private_key,
                check::pem_path,
            )?;
            over.set(
                cert_var,
                "rest_api_server",
                "cert_file",
                &mut rest.cert_file,
                check::pem_path,
            )?;
            over.set(
                ca_var,
                "rest_api_server",
                "ca_file",
                &mut rest.ca_file,
                check::pem_path,
            )?;
        }
        None | Some("no") => {
            for var in REST_TLS_VARS
                .into_iter()
                .filter(|var| lookup(env, var).is_some())
            {
                warnings.push(format!(
                    "{var} is set but ignored: GOPHER_REST_AUTH is not \"yes\""
                ));
            }
        }
        Some(other) => {
            return Err(ConfigError::invalid(
                Origin::Env {
                    var: "GOPHER_REST_AUTH",
                },
                "rest_api_server.ssl_auth",
                Problem::UnknownValue {
                    value: other.to_owned(),
                    allowed: "\"yes\", \"no\"",
                },
            ));
        }
    }

    over.set(
        "GOPHER_METRIC_LOGS_TOTAL_SIZE",
        "logs",
        "metric_total_size",
        &mut config.logs.metric_total_size,
        |v| check::megabytes(check::int_text(v)?),
    )?;
    Ok(())
}

/// Applies single variables and records them as origins.
struct Overrides<'e, 'o> {
    env: &'e dyn Fn(&str) -> Option<String>,
    origins: &'o mut Origins,
}

impl Overrides<'_, '_> {
    /// If `var` is set, converts it with `convert` into `slot` (`section.key`).
    fn set<T>(
        &mut self,
        var: &'static str,
        section: &'static str,
        key: &'static str,
        slot: &mut T,
        convert: impl FnOnce(&str) -> Result<T, Problem>,
    ) -> Result<()> {
        let Some(value) = lookup(self.env, var) else {
            return Ok(());
        };
        let origin = Origin::Env { var };
        *slot = convert(&value).map_err(|problem| {
            ConfigError::invalid(origin.clone(), format!("{section}.{key}"), problem)
        })?;
        self.origins.set(section, key, origin);
        Ok(())
    }
}
