//! Loading a node configuration in layers: the TOML file, then `LICD_*` variables, then
//! flags, each later layer replacing the keys it names (figment merges them and reports a
//! bad value with the layer it came from). The only key that adds rather than replaces is
//! `auth.tokens`: tokens of `LICD_TOKENS` / `--tokens` join the file's `[[auth.tokens]]`, so
//! an operator can keep some entries out of the file during a rotation.

use std::collections::BTreeMap;
use std::path::Path;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::keys::{self, Key, Kind};
use super::{ConfigError, NodeConfig};

/// Values given outside the file, in the order they apply.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// From `LICD_*` variables.
    pub env: Vec<(&'static Key, Value)>,
    /// From flags given on the command line (flags left out are not here).
    pub flags: Vec<(&'static Key, Value)>,
}

/// One layer of overrides as a figment provider.
struct Layer<'a> {
    name: &'static str,
    values: &'a [(&'static Key, Value)],
}

impl Provider for Layer<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (key, value) in self.values {
            if key.kind != Kind::Tokens {
                insert(&mut root, key.path, value.clone());
            }
        }
        Ok(Profile::Default.collect(root))
    }
}

fn insert(dict: &mut Dict, path: &str, value: Value) {
    match path.split_once('.') {
        Some((head, rest)) => {
            let entry = dict
                .entry(head.to_string())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
        None => {
            dict.insert(path.to_string(), value);
        }
    }
}

/// Reads the file (if any), applies the overrides and validates the result.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<NodeConfig, ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        // Read once here so that a missing file is its own clear error (figment would take
        // a missing file for an empty one).
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        figment = figment.merge(Toml::file_exact(path));
    }
    let env = without_idle_switches(&figment, &overrides.env, &overrides.flags);
    let flags = without_idle_switches(&figment, &overrides.flags, &overrides.env);
    figment = figment
        .merge(Layer {
            name: "LICD_* environment variables",
            values: &env,
        })
        .merge(Layer {
            name: "command-line flags",
            values: &flags,
        });
    let mut config: NodeConfig = figment.extract().map_err(|e| {
        ConfigError::Layers(e.into_iter().map(describe).collect::<Vec<_>>().join("; "))
    })?;
    // Tokens add up: the flag's if given, else the variable's.
    let tokens = overrides
        .flags
        .iter()
        .chain(&overrides.env)
        .find(|(k, _)| k.kind == Kind::Tokens);
    if let Some((key, value)) = tokens {
        let text = value.as_str().unwrap_or_default();
        let more = crate::auth::parse_env_tokens(text)
            .map_err(|e| ConfigError::Invalid(format!("--{} / {}: {e}", key.flag, key.env)))?;
        config.auth.tokens.extend(more);
    }
    config.validate()?;
    Ok(config)
}

/// A switch turned off in a section that nothing else creates (`LICD_TLS_REQUIRE_CLIENT_CERT=false`
/// on a node without TLS) says nothing: it is left out rather than made into a section that
/// lacks its other keys.
fn without_idle_switches(
    file: &Figment,
    layer: &[(&'static Key, Value)],
    other: &[(&'static Key, Value)],
) -> Vec<(&'static Key, Value)> {
    let names_section = |section: &str, values: &[(&'static Key, Value)]| {
        values.iter().any(|(k, v)| {
            k.path.split_once('.').map(|(s, _)| s) == Some(section)
                && !(k.kind == Kind::Switch && v.to_bool() == Some(false))
        })
    };
    layer
        .iter()
        .filter(|(k, v)| {
            let Some((section, _)) = k.path.split_once('.') else {
                return true;
            };
            k.kind != Kind::Switch
                || v.to_bool() != Some(false)
                || file.find_value(section).is_ok()
                || names_section(section, layer)
                || names_section(section, other)
        })
        .cloned()
        .collect()
}

/// One figment error in the words of the configuration: the dotted key, and where to set it.
fn describe(e: figment::Error) -> String {
    let at = e.path.join(".");
    let join = |field: &str| {
        if at.is_empty() {
            field.to_string()
        } else {
            format!("{at}.{field}")
        }
    };
    let source = match &e.metadata {
        Some(m) => match &m.source {
            Some(src) => format!("{src}"),
            None => m.name.to_string(),
        },
        None => "the configuration".to_string(),
    };
    match &e.kind {
        figment::error::Kind::MissingField(field) => {
            let full = join(field);
            let mut message = match keys::by_path(&full) {
                Some(k) => format!(
                    "`{full}` is not set: give it in the configuration file, as --{} or as {}",
                    k.flag, k.env
                ),
                None => format!("`{full}` is not set"),
            };
            if full.starts_with("tls.") {
                // One TLS file given alone is the usual cause: name the three that go together.
                message.push_str(
                    " (TLS needs --tls-cert-file, --tls-key-file and --tls-ca-file together)",
                );
            }
            message
        }
        figment::error::Kind::UnknownField(field, expected) => format!(
            "unknown key `{}` in {source} (the keys here are {})",
            if at.ends_with(field.as_str()) {
                at.clone()
            } else {
                join(field)
            },
            expected.join(", ")
        ),
        kind if at.is_empty() => format!("{source}: {kind}"),
        kind => format!("`{at}` in {source}: {kind}"),
    }
}

/// The configuration as dotted keys and their TOML values (arrays of tables, like
/// `auth.tokens`, are one key).
pub fn flatten(config: &NodeConfig) -> BTreeMap<String, toml::Value> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, toml::Value>) {
        for (name, value) in table {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match value {
                toml::Value::Table(inner) => walk(&path, inner, out),
                other => {
                    out.insert(path, other.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(toml::Value::Table(table)) = toml::Value::try_from(config) {
        walk("", &table, &mut out);
    }
    out
}

/// The effective configuration as TOML `licd serve --config` reads back, with a header
/// saying where the two plain secrets come from. Their values are never read for it: the
/// configuration holds only the names of secret files, and token entries hold only hashes.
pub fn print(config: &NodeConfig) -> Result<String, ConfigError> {
    let body = toml::to_string_pretty(config)
        .map_err(|e| ConfigError::Invalid(format!("cannot write the configuration: {e}")))?;
    let secret = |env: &str, file: &Option<std::path::PathBuf>| match (std::env::var_os(env), file)
    {
        (Some(_), _) => format!("from {env} (value not shown)"),
        (None, Some(path)) => format!("from {} (contents not shown)", path.display()),
        (None, None) => "not set".to_string(),
    };
    Ok(format!(
        "# The effective configuration of licd node {}: file, then LICD_* variables, then flags.\n\
         # admin token: {}\n\
         # cluster secret: {}\n\
         {body}",
        config.node_id,
        secret("LICD_ADMIN_TOKEN", &config.admin_token_file),
        secret("LICD_CLUSTER_SECRET", &config.cluster_secret_file),
    ))
}
