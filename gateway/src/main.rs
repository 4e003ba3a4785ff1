//! The `gateway` binary: parse the command line and settings, then run the subcommand.
//! Bad configuration exits 64 with one line naming the setting.

use std::process::ExitCode;

use clap::{Parser, error::ErrorKind};
use gateway::{
    app::Application,
    auth::jwt,
    cli::{Cli, Command, ProbeArgs, TokenArgs},
    config::{
        ConfigError, DatabaseSettings, JwtSettings, LogSettings, ProbeSettings, ServeSettings,
        Source,
    },
    store::migrate,
    telemetry::{self, Output},
};
use shared::claims::AccessClaims;

/// `EX_CONFIG`-style exit code for a bad command line or configuration (sysexits' EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("invalid command line"));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let source = Source::from_process(cli.settings.into_map());
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&source).await,
        Command::Migrate => run_migrate(&source).await,
        Command::Token(args) => token(&source, &args),
        Command::Probe(args) => probe(&source, &args).await,
        Command::Settings => {
            print!("{}", gateway::settings::markdown_table());
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Config(ConfigError),
    Runtime(anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Runtime(e)
    }
}

async fn serve(source: &Source) -> Result<(), Failure> {
    let settings = ServeSettings::load(source)?;
    let telemetry = telemetry::init(&settings.log, settings.traces.as_ref(), Output::Stdout)?;
    let app = Application::bind(settings).await?;
    let outcome = app.run(shutdown_signal()).await;
    // The last spans of the drain go out before the process ends.
    telemetry.shutdown().await;
    outcome?;
    Ok(())
}

async fn run_migrate(source: &Source) -> Result<(), Failure> {
    let database = DatabaseSettings::load(source)?;
    let _telemetry = telemetry::init(&LogSettings::load(source)?, None, Output::Stderr)?;
    let report = migrate::run(&database).await?;
    println!(
        "migrated: database {}, {} migration(s) applied",
        if report.database_created {
            "created"
        } else {
            "existed"
        },
        report.applied.len()
    );
    Ok(())
}

fn token(source: &Source, args: &TokenArgs) -> Result<(), Failure> {
    let settings = JwtSettings::load(source)?;
    let now = jwt::now_secs();
    let claims = AccessClaims {
        sub: args.user.to_string(),
        sid: args.sid.clone(),
        iat: now,
        exp: now + args.ttl_secs,
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
    };
    let token = jwt::mint(&settings, &claims).map_err(|e| anyhow::anyhow!("cannot sign: {e}"))?;
    println!("{token}");
    Ok(())
}

/// `gateway probe`: the image has no shell or curl, so its health check is the binary itself.
async fn probe(source: &Source, args: &ProbeArgs) -> Result<(), Failure> {
    let url = match &args.url {
        Some(url) => url.clone(),
        None => format!(
            "http://{}{}",
            ProbeSettings::load(source)?.internal_addr,
            args.path
        ),
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(args.timeout_ms))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the probe client: {e}"))?;
    match client.get(&url).send().await {
        Ok(answer) if answer.status().is_success() => {
            println!("ok: {url} answered {}", answer.status().as_u16());
            Ok(())
        }
        Ok(answer) => Err(anyhow::anyhow!("{url} answered {}", answer.status().as_u16()).into()),
        Err(error) => Err(anyhow::anyhow!("{url} did not answer: {error}").into()),
    }
}

/// SIGTERM (Kubernetes, the local cluster) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("interrupted"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
