//! The command line: subcommands and one flag per setting (same meaning as the variable).

use std::collections::HashMap;

use clap::{Arg, ArgMatches, Args, FromArgMatches, Parser, Subcommand};
use uuid::Uuid;

use crate::settings::{self, Kind, Setting};

#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    about = "Realtime Socket.IO gateway of the ride-hailing platform"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: SettingFlags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one replica (the default).
    Serve,
    /// Create the database if missing and apply the schema (idempotent).
    Migrate,
    /// Print an HS256 access token for an existing user and session (development).
    Token(TokenArgs),
    /// Ask this host's replica whether it is alive (container health checks): exits 0 when
    /// `GET <path>` on the internal listener answers 200, 1 otherwise.
    Probe(ProbeArgs),
    /// Print every setting (variable, flag, default, meaning) as the README's Markdown table.
    Settings,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The probe to ask: `/livez` (alive) or `/readyz` (can serve).
    #[arg(long, default_value = "/livez")]
    pub path: String,
    /// How long to wait for the answer.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Ask this URL instead (another host: a Helm test pod, a compose health check of `/readyz`).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user's id (`users.id`).
    #[arg(long)]
    pub user: Uuid,
    /// The session's `jti` (the token's `sid` claim).
    #[arg(long)]
    pub sid: String,
    /// Lifetime of the token.
    #[arg(long, default_value_t = 3600)]
    pub ttl_secs: u64,
}

/// Every setting of [`settings::ALL`] as a global flag (`--bind-addr`), except those the
/// OpenTelemetry SDK reads from the environment itself; unset flags fall back to the variable.
#[derive(Debug, Default)]
pub struct SettingFlags {
    given: HashMap<&'static str, String>,
}

impl SettingFlags {
    /// The flags that were given, keyed by the variable of the same meaning.
    pub fn into_map(self) -> HashMap<&'static str, String> {
        self.given
    }

    fn flagged() -> impl Iterator<Item = &'static Setting> {
        settings::ALL.iter().filter(|s| s.kind != Kind::Otel)
    }
}

impl Args for SettingFlags {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for setting in Self::flagged() {
            let first_line = setting.doc.split(". ").next().unwrap_or(setting.doc);
            cmd = cmd.arg(
                Arg::new(setting.name)
                    .long(setting.flag())
                    .global(true)
                    .value_name("VALUE")
                    .help(format!(
                        "{} [env: {}]",
                        first_line.replace('`', ""),
                        setting.name
                    )),
            );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Self::default();
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for setting in Self::flagged() {
            if let Some(value) = matches.get_one::<String>(setting.name) {
                self.given.insert(setting.name, value.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_but_the_sdks_is_a_flag_of_the_same_meaning() {
        let cli = Cli::try_parse_from([
            "gateway",
            "migrate",
            "--drain-spread-ms",
            "7",
            "--jwt-secret",
            "k",
        ])
        .expect("flags after the subcommand are accepted");
        let map = cli.settings.into_map();
        assert_eq!(map.get("DRAIN_SPREAD_MS").map(String::as_str), Some("7"));
        assert_eq!(map.get("JWT_SECRET").map(String::as_str), Some("k"));
        let cmd = <Cli as clap::CommandFactory>::command();
        for setting in settings::ALL {
            let flag = cmd.get_arguments().find(|a| a.get_id() == setting.name);
            match setting.kind {
                Kind::Otel => assert!(flag.is_none(), "{} has a flag", setting.name),
                _ => assert_eq!(
                    flag.and_then(|a| a.get_long()),
                    Some(setting.flag().as_str()),
                    "{}",
                    setting.name
                ),
            }
        }
        assert!(Cli::try_parse_from(["gateway", "--otel-service-name", "x"]).is_err());
    }
}
