//! `licd serve`: run one node from a TOML file, with `LICD_*` variables and flags over it
//! (`--print-config` shows the result).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use figment::value::Value;

use crate::config::keys::{self, KEYS, Key, Kind};
use crate::config::load::{self, Overrides};
use crate::config::{NodeConfig, duration};
use crate::node::Node;

/// Options of `licd serve`: the configuration file, `--print-config`, and one flag per
/// configuration key (built from [`keys::KEYS`]), each also readable from its `LICD_*`
/// variable. Only the flags and variables actually given override the file.
#[derive(Debug, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    pub config: Option<PathBuf>,
    /// Print the effective configuration and exit.
    pub print_config: bool,
    /// The keys given by variables and flags.
    pub overrides: Overrides,
}

const CONFIG_ID: &str = "config";
const PRINT_ID: &str = "print-config";

impl clap::Args for ServeArgs {
    fn augment_args(cmd: Command) -> Command {
        let cmd = cmd
            .arg(
                Arg::new(CONFIG_ID)
                    .long("config")
                    .short('c')
                    .env(keys::CONFIG_ENV)
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("TOML configuration file (see README: Configuration)"),
            )
            .arg(
                Arg::new(PRINT_ID)
                    .long("print-config")
                    .action(ArgAction::SetTrue)
                    .help(
                        "Print the effective configuration (file, then LICD_* variables, then \
                         flags) as TOML and exit; secrets are not shown",
                    ),
            );
        KEYS.iter().fold(cmd, |cmd, key| cmd.arg(key_arg(key)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// The flag of one configuration key.
fn key_arg(key: &'static Key) -> Arg {
    let arg = Arg::new(key.path).long(key.flag).env(key.env).help(format!(
        "{} [{}]",
        capitalize(key.help),
        key.path
    ));
    match key.kind {
        Kind::Text => arg.value_name("VALUE"),
        Kind::Number => arg.value_name("N").value_parser(clap::value_parser!(u64)),
        Kind::Duration => arg
            .value_name("DURATION")
            .value_parser(duration::parse_millis),
        Kind::Switch => arg.action(ArgAction::SetTrue),
        Kind::List => arg
            .value_name("VALUE")
            .action(ArgAction::Append)
            .value_delimiter(','),
        Kind::Tokens => arg
            .value_name("ROLE:SHA256[:NAME],...")
            .hide_env_values(true),
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl clap::FromArgMatches for ServeArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = ServeArgs {
            config: m.get_one::<PathBuf>(CONFIG_ID).cloned(),
            print_config: m.get_flag(PRINT_ID),
            overrides: Overrides::default(),
        };
        for key in KEYS {
            let layer = match m.value_source(key.path) {
                Some(ValueSource::CommandLine) => &mut args.overrides.flags,
                Some(ValueSource::EnvVariable) => &mut args.overrides.env,
                _ => continue,
            };
            let value = match key.kind {
                Kind::Switch => Value::from(m.get_flag(key.path)),
                Kind::Number | Kind::Duration => {
                    Value::from(m.get_one::<u64>(key.path).copied().unwrap_or_default())
                }
                Kind::List => Value::from(
                    m.get_many::<String>(key.path)
                        .into_iter()
                        .flatten()
                        .map(|s| s.trim())
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::from(s.to_string()))
                        .collect::<Vec<_>>(),
                ),
                Kind::Text | Kind::Tokens => {
                    Value::from(m.get_one::<String>(key.path).cloned().unwrap_or_default())
                }
            };
            layer.push((key, value));
        }
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl ServeArgs {
    /// Merges the file (if any), the variables and the flags into a validated configuration.
    pub fn into_config(self) -> anyhow::Result<NodeConfig> {
        Ok(load::load(self.config.as_deref(), &self.overrides)?)
    }
}

/// Every `LICD_*` variable some licd command reads: the variables of every flag of every
/// subcommand, and the few read directly.
pub fn known_variables() -> BTreeSet<String> {
    fn walk(cmd: &Command, out: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out: BTreeSet<String> = keys::DIRECT_ENV.iter().map(|s| s.to_string()).collect();
    walk(&<super::Cli as clap::CommandFactory>::command(), &mut out);
    out
}

/// Looks at the `LICD_*` variables of the environment. A name that is none of licd's but
/// within two letters of one, or one of them without its last part (`LICD_TICK` for
/// `LICD_TICK_MS`), is taken for a misspelling and refused (`Err` names the
/// variable it resembles); other unknown names are returned, to be logged, since variables
/// of other programs share the prefix (Kubernetes sets `LICD_SERVICE_HOST`, `LICD_PORT`...
/// for a service named licd).
pub fn check_variables(
    names: impl IntoIterator<Item = String>,
    known: &BTreeSet<String>,
) -> anyhow::Result<Vec<String>> {
    let mut unknown = Vec::new();
    for name in names {
        if !name.starts_with("LICD_") || known.contains(&name) {
            continue;
        }
        let close = known
            .iter()
            .find(|k| edit_distance(k, &name) <= 2 || k.starts_with(&format!("{name}_")));
        if let Some(close) = close {
            anyhow::bail!(
                "unknown environment variable {name}: did you mean {close}? (`licd serve --help` \
                 lists the variables of every configuration key)"
            );
        }
        unknown.push(name);
    }
    Ok(unknown)
}

/// Levenshtein distance over bytes (the names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

fn environment_names() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect()
}

/// Runs the node until SIGINT or SIGTERM, then shuts down gracefully: stop accepting, drain
/// in-flight requests, shut Raft down, flush the database.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    super::init_tracing();
    // Before anything is bound: a SIGTERM from now on stops the node gracefully.
    let signal = shutdown_signal();
    let unknown = check_variables(environment_names(), &known_variables())?;
    if args.print_config {
        let config = args.into_config()?;
        print!("{}", load::print(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    for name in unknown {
        tracing::warn!(variable = %name, "ignoring an environment variable licd does not read");
    }
    let config = args.into_config()?;
    let secrets = config.secrets()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let options = crate::http::ServerOptions::for_node(&config)?;
    let node = Node::start(&config, secrets).await?;
    if config.tls.is_none() {
        tracing::warn!(
            listen = %config.listen,
            "serving plain HTTP: tokens, the cluster secret and license traffic cross the \
             network unencrypted; configure a [tls] section (docs/operations.md: TLS)"
        );
    }
    tracing::info!(
        node_id = config.node_id,
        listen = %config.listen,
        scheme = node.outgoing().scheme(),
        advertise = %config.advertise_addr(),
        data_dir = %config.data_dir.display(),
        "licd node started"
    );
    let router = crate::http::router(node.clone());
    // The listener is bound and the node started: requests are served from here on.
    super::notify::notify("READY=1");
    let stopping = async {
        signal.await;
        super::notify::notify("STOPPING=1");
    };
    crate::http::serve(listener, router, options, stopping).await?;
    tracing::info!("HTTP server stopped; shutting Raft down");
    node.shutdown().await;
    tracing::info!("licd node stopped");
    Ok(ExitCode::SUCCESS)
}

/// A future that completes on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives while the server is
/// still starting is not lost (and does not kill the process before its graceful shutdown).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (term, int) => {
                    tracing::warn!(
                        term = ?term.err(),
                        int = ?int.err(),
                        "cannot watch SIGTERM and SIGINT; only Ctrl-C stops the node"
                    );
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{check_variables, known_variables};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn misspelt_variables_are_refused_and_foreign_ones_returned() {
        let known = known_variables();
        // The client's variables and the directly read secrets are licd's own.
        let ours = names(&[
            "LICD_ENDPOINTS",
            "LICD_ADMIN_TOKEN",
            "LICD_CLUSTER_SECRET",
            "LICD_CA_FILE",
            "LICD_LEASE_TOKEN",
            "LICD_TOKEN",
            "LICD_LOG",
            "LICD_LOG_FORMAT",
            "LICD_CONFIG",
            "LICD_HEARTBEAT_MS",
            "PATH",
        ]);
        assert_eq!(check_variables(ours, &known).unwrap(), Vec::<String>::new());
        let foreign = names(&[
            "LICD_SERVICE_HOST",
            "LICD_PORT_7101_TCP",
            "LICD_REQUIRE_BROWSER",
        ]);
        assert_eq!(check_variables(foreign.clone(), &known).unwrap(), foreign);
        for (typo, meant) in [
            ("LICD_HEARTBEAT_M", "LICD_HEARTBEAT_MS"),
            ("LICD_NODEID", "LICD_NODE_ID"),
            ("LICD_TRUSTED_KEY", "LICD_TRUSTED_KEYS"),
            ("LICD_ELECTION_TIMEOUT_MAX", "LICD_ELECTION_TIMEOUT_MAX_MS"),
        ] {
            let err = check_variables(names(&[typo]), &known)
                .unwrap_err()
                .to_string();
            assert!(err.contains(typo) && err.contains(meant), "{typo}: {err}");
        }
    }

    /// Every `"LICD_..."` literal in the sources names a variable licd knows, so one read
    /// with `std::env::var` outside clap cannot be taken for a foreign variable.
    #[test]
    fn every_variable_the_sources_name_is_known() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let known = known_variables();
        let mut files = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut seen = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            // This file's test names misspellings on purpose.
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (i, _) in text.match_indices("\"LICD_") {
                let name: String = text[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if name.len() > "LICD_".len() {
                    seen += 1;
                    assert!(known.contains(&name), "{} names {name}", file.display());
                }
            }
        }
        assert!(seen > 5, "found only {seen} variables");
    }
}
