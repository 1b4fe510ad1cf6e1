//! The configuration's validation, by table and field.

use super::*;
use crate::source::layout::ExpectedKind;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn empty_file_gives_the_documented_defaults() {
    let config =
        Config::from_file(ConfigFile::parse("", "t").expect("parse"), &no_env).expect("valid");
    assert_eq!(config.lake, LakeSpec::Local(PathBuf::from("lake")));
    assert_eq!(config.state_dir, PathBuf::from("lake/_state"));
    assert_eq!(config.http_listen.to_string(), defaults::HTTP_LISTEN);
    assert_eq!(config.poll_interval, Duration::from_secs(5));
    assert!(
        config.sources.is_empty(),
        "a file without sources serves queries only; only the built-in one names the sample"
    );
}

#[test]
fn unknown_keys_are_named() {
    let err = ConfigFile::parse("[ingest]\nconcurency = 3\n", "t").expect_err("unknown key");
    assert!(err.to_string().contains("concurency"), "{err}");
    let err = ConfigFile::parse(
        "[[source]]\ntype = \"folder\"\npath = \"x\"\nbucket = \"y\"\n",
        "t",
    )
    .expect_err("unknown key");
    assert!(err.to_string().contains("bucket"), "{err}");
}

#[test]
fn bad_values_name_their_field() {
    let parse =
        |text: &str| Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env);
    let err = parse("[ingest]\nconcurrency = 0\n").expect_err("zero");
    assert!(err.to_string().starts_with("ingest.concurrency"), "{err}");
    let err = parse("[ingest]\ncommit_rows = 0\n").expect_err("zero");
    assert!(err.to_string().starts_with("ingest.commit_rows"), "{err}");
    let err = parse("[ingest]\nevent_id_retention = \"30m\"\n").expect_err("short");
    assert!(
        err.to_string().starts_with("ingest.event_id_retention"),
        "{err}"
    );
    let retention = |text: &str| parse(text).expect("config").event_id_retention;
    assert_eq!(retention(""), Duration::from_secs(30 * 86_400));
    assert_eq!(
        retention("[ingest]\nevent_id_retention = \"7d\"\n"),
        Duration::from_secs(7 * 86_400)
    );
    let err = parse("[http]\nlisten = \"nope\"\n").expect_err("address");
    assert!(err.to_string().starts_with("http.listen"), "{err}");
    let err = ConfigFile::parse("[ingest]\npoll_interval = \"soon\"\n", "t").expect_err("duration");
    assert!(err.to_string().contains("poll_interval"), "{err}");
}

#[test]
fn the_builtin_configuration_is_valid_and_watches_the_sample_role() {
    let config = Config::from_file(ConfigFile::builtin(), &no_env).expect("valid");
    let engine = &config.rules;
    assert_eq!(
        engine.rule_ids(),
        [
            "unexpected_role_assumer",
            "unattributed_db_session",
            "watched_role_trust_changed",
            "assume_role_denied",
            "mongodb_drop",
            "mongodb_user_change",
            "mongodb_auth_failures",
            "mongodb_unexpected_network"
        ]
    );
}

#[test]
fn detection_and_webhook_errors_name_their_field() {
    let parse =
        |text: &str| Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env);
    let err = parse("[detect.mongodb_unexpected_network]\nallowed_cidrs = [\"10.0.0.0/33\"]\n")
        .expect_err("cidr");
    assert!(
        err.to_string()
            .starts_with("detect.mongodb_unexpected_network.allowed_cidrs"),
        "{err}"
    );
    let err = parse("[[detect.unexpected_role_assumer]]\nroles = [\"arn:aws:iam::1:role/x\"]\n")
        .expect_err("expected");
    assert!(
        err.to_string()
            .starts_with("detect.unexpected_role_assumer[0].expected"),
        "{err}"
    );
    let err =
        parse("[[alerts.webhook]]\nname = \"pager\"\nurl_env = \"PAGER_URL\"\n").expect_err("url");
    assert!(err.to_string().contains("PAGER_URL"), "{err}");
    let err =
        ConfigFile::parse("[detect.mongodb_drop]\nenable = false\n", "t").expect_err("unknown key");
    assert!(err.to_string().contains("enable"), "{err}");
}

#[test]
fn a_lake_on_s3_keeps_its_state_locally() {
    let parse =
        |text: &str| Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env);
    let config = parse("lake = \"s3://audit-lake/prod\"\n[lake_aws]\nregion = \"eu-west-1\"\n")
        .expect("valid");
    let LakeSpec::S3 { location, aws } = &config.lake else {
        panic!("s3 lake");
    };
    assert_eq!(
        (location.bucket.as_str(), location.prefix.as_str()),
        ("audit-lake", "prod/")
    );
    assert_eq!(aws.region.as_deref(), Some("eu-west-1"));
    assert_eq!(config.state_dir, PathBuf::from("auditlake-state"));
    let err = parse("lake = \"gs://x/y\"\n").expect_err("scheme");
    assert!(err.to_string().starts_with("lake:"), "{err}");
    let err = parse("lake = \"s3://x/y\"\n").expect_err("bucket");
    assert!(err.to_string().starts_with("lake:"), "{err}");
    let err = parse("[lake_aws]\nrole_arn = \"nope\"\n").expect_err("arn");
    assert!(err.to_string().starts_with("lake_aws.role_arn"), "{err}");
}

#[test]
fn aws_sources_are_validated_by_field() {
    let parse =
        |text: &str| Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env);
    let ok = parse(
        "[[source]]\ntype = \"s3\"\nbucket = \"trail-logs\"\nprefix = \"/org\"\nkind = \"cloudtrail\"\nregion = \"eu-west-1\"\nrole_arn = \"arn:aws:iam::123456789012:role/reader\"\nexternal_id = \"x\"\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/1/q\"\nrequest_timeout = \"5s\"\n\n[[source]]\ntype = \"cloudwatch\"\nlog_groups = [\"trail\"]\noverlap = \"1m\"\n",
    )
    .expect("valid");
    let SourceSpec::S3 { spec, .. } = &ok.sources[0] else {
        panic!("s3 source");
    };
    assert_eq!(spec.prefix, "org/");
    assert_eq!(spec.expected, ExpectedKind::Cloudtrail);
    assert_eq!(spec.aws.attempt_timeout, Duration::from_secs(5));
    assert!(
        matches!(&ok.sources[1], SourceSpec::Cloudwatch(c) if c.overlap == Duration::from_secs(60))
    );

    let err = parse("[[source]]\ntype = \"s3\"\nbucket = \"Bad_Bucket\"\n").expect_err("bucket");
    assert!(err.to_string().starts_with("source[0].bucket"), "{err}");
    let err = parse("[[source]]\ntype = \"s3\"\nbucket = \"ok-bucket\"\nrole_arn = \"reader\"\n")
        .expect_err("arn");
    assert!(err.to_string().starts_with("source[0].role_arn"), "{err}");
    let err = parse("[[source]]\ntype = \"s3\"\nbucket = \"ok-bucket\"\nqueue_url = \"queue\"\n")
        .expect_err("url");
    assert!(err.to_string().starts_with("source[0].queue_url"), "{err}");
    let err = parse("[[source]]\ntype = \"cloudwatch\"\nlog_groups = []\n").expect_err("groups");
    assert!(err.to_string().starts_with("source[0].log_groups"), "{err}");
    let err = parse("[[source]]\ntype = \"s3\"\nbucket = \"ok-bucket\"\nkind = \"vpc\"\n")
        .expect_err("kind");
    assert!(err.to_string().starts_with("source[0].kind"), "{err}");
    let err = ConfigFile::parse(
        "[[source]]\ntype = \"s3\"\nbucket = \"ok-bucket\"\nregoin = \"x\"\n",
        "t",
    )
    .expect_err("unknown");
    assert!(err.to_string().contains("regoin"), "{err}");
}

#[test]
fn beyond_loopback_needs_a_token_from_the_environment() {
    let text = "[http]\nlisten = \"0.0.0.0:7080\"\n";
    let err = Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env)
        .expect_err("token");
    assert!(err.to_string().contains(defaults::TOKEN_ENV), "{err}");
    let env = |name: &str| (name == defaults::TOKEN_ENV).then(|| "s3cret".to_owned());
    let config =
        Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &env).expect("valid");
    assert_eq!(config.http_token.as_deref(), Some("s3cret"));
    assert!(!format!("{config:?}").contains("s3cret"));
}

#[test]
fn a_postgres_address_beyond_loopback_without_a_token_names_its_own_field() {
    let config = Config::from_file(ConfigFile::default(), &no_env).expect("valid");
    let err = config
        .with_pg_listen("0.0.0.0:7432".parse().expect("addr"))
        .expect_err("token");
    assert!(err.to_string().contains("http.pg_listen"), "{err}");
    let text = "[http]\npg_listen = \"0.0.0.0:7432\"\n";
    let err = Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env)
        .expect_err("token");
    assert!(err.to_string().contains("http.pg_listen"), "{err}");
}

#[test]
fn connection_limits_and_tls_files_are_checked_and_name_their_field() {
    let parse =
        |text: &str| Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env);
    let config = parse("").expect("defaults");
    assert_eq!(config.connections, ConnectionLimits::default());
    assert!(config.tls.is_none());
    for (text, field) in [
        ("[http]\nmax_connections = 0\n", "http.max_connections"),
        ("[http]\nheader_timeout = \"0s\"\n", "http.header_timeout"),
        ("[http]\ntls_certificate = \"cert.pem\"\n", "http.tls_key"),
        ("[http]\ntls_key = \"key.pem\"\n", "http.tls_certificate"),
        (
            "[http]\ntls_certificate = \"/no/such/cert.pem\"\ntls_key = \"/no/such/key.pem\"\n",
            "http.tls_certificate",
        ),
        (
            "[sql]\nmax_statement_bytes = 10\n",
            "sql.max_statement_bytes",
        ),
        ("[sql]\nmax_function_bytes = 10\n", "sql.max_function_bytes"),
        ("[sql]\nmax_heap_bytes = 1024\n", "sql.max_heap_bytes"),
    ] {
        let err = parse(text).expect_err(text);
        assert!(err.to_string().contains(field), "{text}: {err}");
    }
    let config = parse(
        "[http]\nmax_connections = 3\nidle_timeout = \"7s\"\n[sql]\nmax_spill_bytes = 1024\n",
    )
    .expect("valid");
    assert_eq!(config.connections.max_connections, 3);
    assert_eq!(config.connections.idle_timeout, Duration::from_secs(7));
    assert_eq!(config.query_limits.max_spill_bytes, 1024);
}

#[test]
fn a_source_built_in_code_gets_the_defaults_of_one_written_in_the_file() {
    // The command line builds sources this way (`auditlake ingest s3://...`).
    let field = |key: &str| format!("source x: {key}");
    let from_file = |text: &str| {
        Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env)
            .expect("valid")
            .sources
            .remove(0)
    };
    let (spec, queue_wait) = S3SourceConfig {
        bucket: "trail-logs".into(),
        prefix: Some("org".into()),
        ..S3SourceConfig::default()
    }
    .validate(&field)
    .expect("valid");
    assert_eq!(
        SourceSpec::S3 { spec, queue_wait },
        from_file("[[source]]\ntype = \"s3\"\nbucket = \"trail-logs\"\nprefix = \"org\"\n")
    );
    let spec = CloudwatchSourceConfig {
        log_groups: vec!["trail".into()],
        ..CloudwatchSourceConfig::default()
    }
    .validate(&field)
    .expect("valid");
    assert_eq!(spec.overlap, defaults::OVERLAP);
    assert_eq!(
        SourceSpec::Cloudwatch(spec),
        from_file("[[source]]\ntype = \"cloudwatch\"\nlog_groups = [\"trail\"]\n")
    );
    let err = CloudwatchSourceConfig::default()
        .validate(&field)
        .expect_err("no group");
    assert!(err.to_string().starts_with("source x: log_groups"), "{err}");
}

#[test]
fn the_access_chain_watches_the_rules_roles_and_its_own_with_a_bounded_window() {
    let parse =
        |text: &str| Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env);
    let config = parse(
        "[access]\nroles = [\"arn:aws:iam::1:role/b\"]\n\
         [[detect.unexpected_role_assumer]]\nroles = [\"arn:aws:iam::1:role/a\"]\nexpected = [\"1\"]\n",
    )
    .expect("valid");
    assert_eq!(
        config.access.watched_roles,
        ["arn:aws:iam::1:role/a", "arn:aws:iam::1:role/b"]
    );
    assert_eq!(config.access.link_window, Duration::from_secs(30));
    assert!(config.rules.rule_ids().contains(&"unattributed_db_session"));
    for (text, field) in [
        ("[access]\nlink_window = \"0s\"\n", "access.link_window"),
        ("[access]\nlink_window = \"2h\"\n", "access.link_window"),
        ("[access]\nroles = [\"db-writer\"]\n", "access.roles[0]"),
    ] {
        let err = parse(text).expect_err(text);
        assert!(err.to_string().starts_with(field), "{text}: {err}");
    }
    let err = ConfigFile::parse("[access]\nwindow = \"1m\"\n", "t").expect_err("unknown key");
    assert!(err.to_string().contains("window"), "{err}");
}
