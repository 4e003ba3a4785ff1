//! The `gateway` binary as operators run it: configuration errors, `migrate`, `token`.
//! Runs the real binary with a cleared environment; `migrate` uses a fresh database on the
//! local PostgreSQL (`TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432`).

use std::process::{Command, Output};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

fn gateway(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run gateway")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn serve_without_required_secrets_exits_64_naming_them() {
    let out = gateway(&["serve"], &[("INTERNAL_API_TOKEN", "t")]);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        stderr(&out).trim(),
        "invalid configuration: JWT_SECRET is required and not set"
    );
    let out = gateway(&[], &[("JWT_SECRET", "k")]);
    assert_eq!(
        out.status.code(),
        Some(64),
        "serve is the default subcommand"
    );
    assert!(stderr(&out).contains("INTERNAL_API_TOKEN"));
}

#[test]
fn a_malformed_setting_exits_64_with_one_line_and_no_secret() {
    let secret = "super-secret-jwt-key";
    for (name, value) in [
        ("BIND_ADDR", "localhost"),
        ("NODE_TTL_MS", "ten"),
        ("LOG_FORMAT", "yaml"),
        ("DATABASE_URL", "postgres://u:pw-in-url@h:port/db"),
        ("REDIS_URL", "http://nope"),
    ] {
        let out = gateway(
            &["serve"],
            &[
                ("JWT_SECRET", secret),
                ("INTERNAL_API_TOKEN", "t"),
                (name, value),
            ],
        );
        assert_eq!(out.status.code(), Some(64), "{name}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.contains(name), "{name}: {err}");
        assert!(!err.contains(secret) && !err.contains("pw-in-url"), "{err}");
    }
}

#[test]
fn flags_are_settings_too() {
    let out = gateway(
        &[
            "serve",
            "--jwt-secret",
            "k",
            "--internal-api-token",
            "t",
            "--bind-addr",
            "nope",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("BIND_ADDR"));
    let out = gateway(&["serve", "--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(stderr(&out).lines().count(), 1);
}

#[test]
fn token_prints_a_verifiable_hs256_token() {
    let user = "0b6f3c2e-1d4a-4f5b-8c7d-9e0f1a2b3c4d";
    let out = gateway(
        &[
            "token",
            "--user",
            user,
            "--sid",
            "sess-1",
            "--ttl-secs",
            "120",
        ],
        &[("JWT_SECRET", "k"), ("JWT_ISSUER", "auth")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let token = String::from_utf8(out.stdout).expect("utf8");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    let claims =
        jsonwebtoken::decode::<Value>(token.trim(), &DecodingKey::from_secret(b"k"), &validation)
            .expect("valid token")
            .claims;
    assert_eq!(claims["sub"], user);
    assert_eq!(claims["sid"], "sess-1");
    assert_eq!(claims["iss"], "auth");
    let lifetime = claims["exp"].as_u64().unwrap_or(0) - claims["iat"].as_u64().unwrap_or(0);
    assert_eq!(lifetime, 120);

    let out = gateway(
        &["token", "--user", "nope", "--sid", "s"],
        &[("JWT_SECRET", "k")],
    );
    assert_eq!(
        out.status.code(),
        Some(64),
        "a non-UUID user is a usage error"
    );
    let out = gateway(&["token", "--user", user, "--sid", "s"], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("JWT_SECRET"));
}

#[tokio::test]
async fn migrate_creates_the_database_and_is_idempotent() {
    let base = std::env::var("TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("gw_cli_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{base}/{name}");
    let first = gateway(&["migrate"], &[("DATABASE_URL", &url)]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("database created, 1 migration(s) applied")
    );
    let second = gateway(&["migrate", "--database-url", &url], &[]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert!(
        String::from_utf8_lossy(&second.stdout)
            .contains("database existed, 0 migration(s) applied")
    );

    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let columns: Vec<String> = client
        .query(
            "SELECT table_name || '.' || column_name FROM information_schema.columns
             WHERE table_name IN ('users', 'sessions') ORDER BY 1",
            &[],
        )
        .await
        .expect("columns")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for expected in [
        "sessions.access_token_expires_at",
        "sessions.id",
        "sessions.jti",
        "sessions.revoked",
        "sessions.session_type",
        "sessions.user_id",
        "users.id",
        "users.org_id",
        "users.status",
        "users.user_type",
    ] {
        assert!(columns.iter().any(|c| c == expected), "missing {expected}");
    }
    drop(client);

    let (admin, conn) = tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
        .await
        .expect("connect admin");
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .expect("drop");
}

#[test]
fn migrate_against_an_unreachable_server_fails_cleanly() {
    let out = gateway(
        &["migrate"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot connect to PostgreSQL"));
}

#[test]
fn probe_exits_0_when_the_replica_is_alive_and_1_when_nothing_answers() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    // Alive without its database: /livez answers while dependencies come up.
    let mut replica = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("serve")
        .env_clear()
        .envs([
            ("JWT_SECRET", "k"),
            ("INTERNAL_API_TOKEN", "t"),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("INTERNAL_BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stdout = replica.stdout.take().expect("stdout");
    let internal = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            let entry: Value = serde_json::from_str(&line).ok()?;
            (entry["message"] == "listeners bound")
                .then(|| entry["internal"].as_str().map(String::from))?
        })
        .expect("the 'listeners bound' line");
    let alive = gateway(&["probe"], &[("INTERNAL_BIND_ADDR", &internal)]);
    let not_ready = gateway(
        &["probe", "--path", "/readyz"],
        &[("INTERNAL_BIND_ADDR", &internal)],
    );
    let by_url = gateway(
        &["probe", "--url", &format!("http://{internal}/readyz")],
        &[],
    );
    let _ = replica.kill();
    let _ = replica.wait();
    assert_eq!(
        by_url.status.code(),
        Some(1),
        "--url asks that URL: not ready"
    );
    assert!(
        stderr(&by_url).contains("/readyz answered 503"),
        "{}",
        stderr(&by_url)
    );
    assert_eq!(alive.status.code(), Some(0), "{}", stderr(&alive));
    assert_eq!(
        not_ready.status.code(),
        Some(1),
        "no database: not ready ({})",
        stderr(&not_ready)
    );
    assert!(
        stderr(&not_ready).contains("answered 503"),
        "{}",
        stderr(&not_ready)
    );

    let gone = gateway(&["probe"], &[("INTERNAL_BIND_ADDR", &internal)]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        stderr(&gone).contains("did not answer"),
        "{}",
        stderr(&gone)
    );
}
