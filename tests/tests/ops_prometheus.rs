//! ops/prometheus and grafana/ checked against the real Prometheus (Debian's
//! `prometheus` package): `promtool check rules`, `promtool test rules` (unit tests for
//! every alert), `promtool check metrics` on a live gateway scrape, and a live server
//! scraping a loaded gateway (and wsload, when it exports metrics) that must answer every
//! PromQL expression of every dashboard panel, template variable and rule without error,
//! naming only metrics the live scrape has.

mod ops_support;

use ops_support::*;
use ringcast_tests::gateway::Gateway;
use ringcast_tests::ports::free_port;
use ringcast_tests::programs::binary;
use ringcast_tests::prometheus::{Prometheus, ScrapeJob};
use ringcast_tests::ws_client::{connect, try_upgrade};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RULES: &str = "ops/prometheus/ringcast-rules.yml";
const RULE_TESTS: &str = "ops/prometheus/ringcast-rules.test.yml";
const DASHBOARDS: [&str; 2] = [
    "grafana/dashboards/ringcast-overview.json",
    "grafana/dashboards/ringcast-capacity.json",
];

/// wsload's metric names as PROJECT.md specifies them (issue 5). Used only while the
/// built wsload has no `--metrics` yet; then the live scrape is the reference.
const WSLOAD_SPECIFIED: [&str; 11] = [
    "wsload_connections_target",
    "wsload_connections",
    "wsload_connects_total",
    "wsload_connect_errors_total",
    "wsload_closed_by_server_total",
    "wsload_messages_received_total",
    "wsload_bytes_received_total",
    "wsload_pings_received_total",
    "wsload_latency_seconds",
    "wsload_seq_gaps_total",
    "wsload_seq_dups_total",
];

/// Gateway metrics that crates/telemetry/src/names.rs defines but only a gateway with a
/// Redis broker exports (a node without one has no broker connection to report). They
/// must still be defined in names.rs; the test says loudly when they are checked this
/// way instead of against the live scrape.
const NOT_YET_EXPORTED: [&str; 3] = [
    "ringcast_broker_up",
    "ringcast_broker_reconnects_total",
    "ringcast_broker_latency_seconds",
];

fn promtool() -> Option<std::path::PathBuf> {
    let tool = system_tool("promtool");
    if tool.is_none() {
        missing("promtool", "Debian prometheus");
    }
    tool
}

#[test]
fn rules_pass_promtool_check_and_unit_tests() {
    let Some(promtool) = promtool() else { return };
    run_ok(
        Command::new(&promtool)
            .args(["check", "rules"])
            .arg(repo_file(RULES)),
        60,
    );
    let out = run_ok(
        Command::new(&promtool)
            .args(["test", "rules"])
            .arg(repo_file(RULE_TESTS)),
        60,
    );
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has a unit test.
    let tests = read(RULE_TESTS);
    for alert in read(RULES)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has no promtool unit test"
        );
    }
}

#[test]
fn gateway_scrape_passes_promtool_check_metrics() {
    let Some(promtool) = promtool() else { return };
    let gateway = Gateway::start(1, &["--ping-interval", "1"]);
    let _ = try_upgrade(gateway.ws_addr(), "/");
    let mut client = connect(gateway.ws_addr(), "/echo");
    client.close(None).expect("close");
    gateway.wait_metric("ringcast_connections_closed_total", 10, |v| v >= 1.0);
    let scrape = gateway.metrics();
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(scrape.as_bytes()).expect("write scrape");
    }
    let out = child.wait_with_output().expect("promtool check metrics");
    assert!(
        out.status.success() && both(&out).trim().is_empty(),
        "promtool check metrics:\n{}",
        both(&out)
    );
}

/// Metric names an expression selects: identifiers outside strings, label matchers,
/// ranges and `by (...)`-style lists that are not functions, keywords or numbers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 9] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "group_left",
        "group_right",
    ];
    const LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |from: usize, close: char| {
        let mut j = from;
        while j < chars.len() && chars[j] != close {
            if chars[j] == '"' || chars[j] == '\'' {
                let quote = chars[j];
                j += 1;
                while j < chars.len() && chars[j] != quote {
                    j += if chars[j] == '\\' { 2 } else { 1 };
                }
            }
            j += 1;
        }
        j + 1
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_to(i + 1, c);
        } else if c == '{' {
            i = skip_to(i + 1, '}');
        } else if c == '[' {
            i = skip_to(i + 1, ']');
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let opens = chars.get(next) == Some(&'(');
            let rest: String = chars[next..].iter().collect();
            // `sum by (le) (...)`: an aggregation with its grouping before the argument.
            let groups = ["by", "without"].iter().any(|g| {
                rest.strip_prefix(g)
                    .is_some_and(|r| r.trim_start().starts_with('('))
            });
            if LISTS.contains(&word.as_str()) && opens {
                i = skip_to(next + 1, ')');
            } else if !opens && !groups && !KEYWORDS.contains(&word.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_name_parser() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"y|z", le!="1"}[1m]))) / on (instance) group_left() b offset 5m and c > 2^30 or sum without (shard) (d:rec:rate1m)"#,
    );
    let want: BTreeSet<String> = ["a_bucket", "b", "c", "d:rec:rate1m"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);
    assert!(metric_names("vector(1) * 1e3").is_empty());
}

/// What Grafana substitutes for the dashboards' variables when "All" is selected.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("${datasource}", "prometheus")
        .replace("$job", ".*")
        .replace("$instance", ".*")
        .replace("$shard", ".*")
}

/// (where, expression) of every query target of every panel, rows' panels included.
fn panel_queries(dashboard: &Value, file: &str, out: &mut Vec<(String, String)>) {
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_else(|| {
                panic!(
                    "{file}: panel {:?} has a target without expr",
                    panel["title"]
                )
            });
            out.push((
                format!("{file}: panel {:?} {}", panel["title"], target["refId"]),
                expr.to_owned(),
            ));
        }
        panel_queries(panel, file, out);
    }
}

/// (where, selector, label) of every `label_values(selector, label)` variable.
fn variable_queries(dashboard: &Value, file: &str) -> Vec<(String, String, String)> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let query = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .expect("variable query");
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{file}: variable query {query} is not label_values"));
            let (selector, label) = inner
                .rsplit_once(',')
                .expect("label_values(selector, label)");
            (
                format!("{file}: variable {}", v["name"]),
                selector.trim().to_owned(),
                label.trim().to_owned(),
            )
        })
        .collect()
}

/// (where, expression, is a recording rule) of every rule, parsed by PyYAML.
fn rule_queries() -> Vec<(String, String, bool)> {
    let python = venv_tool("python").expect("venv python (PyYAML)");
    let out = run_ok(
        Command::new(python)
            .arg("-c")
            .arg("import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))")
            .arg(repo_file(RULES)),
        30,
    );
    let rules: Value = serde_json::from_str(&out).expect("rules JSON");
    let mut queries = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let (name, record) = match rule["record"].as_str() {
                Some(r) => (r, true),
                None => (rule["alert"].as_str().expect("record or alert"), false),
            };
            queries.push((
                format!("{RULES}: {name}"),
                rule["expr"].as_str().expect("expr").to_owned(),
                record,
            ));
        }
    }
    queries
}

/// Whether the built wsload accepts `--metrics` (issue 5 adds it).
fn wsload_has_metrics() -> bool {
    let out = run(Command::new(binary("wsload")).args(["push", "--help"]), 30);
    String::from_utf8_lossy(&out.stdout).contains("--metrics")
}

/// The base name of a histogram or summary series name.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

#[test]
fn every_dashboard_and_rule_expression_runs_on_a_live_prometheus() {
    if !Prometheus::available() {
        return missing("prometheus", "Debian prometheus");
    }
    if venv_tool("python").is_none() {
        return missing(
            "python with PyYAML",
            ".venv from .ci/python-requirements.txt",
        );
    }
    let gateway = Gateway::start(1, &["--ping-interval", "1"]);
    let wsload_metrics = wsload_has_metrics();
    let wsload_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    // wsload push: 20 subscribers, publishes through the admin API, publish->receive
    // latency; it stops by itself after the duration (and is killed by pid at the end).
    let mut wsload = Command::new(binary("wsload"));
    wsload.args(["push", "--url", &gateway.ws_url("/news")]);
    wsload.args([
        "--connections",
        "20",
        "--duration",
        "45",
        "--publish-rate",
        "50",
    ]);
    wsload.args(["--admin", &format!("http://{}", gateway.admin)]);
    if wsload_metrics {
        wsload.args(["--metrics", &wsload_addr.to_string()]);
    }
    let _wsload = Killed(
        wsload
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wsload"),
    );
    gateway.wait_metric("ringcast_connections", 20, |v| v >= 20.0);
    // Closes with a reason and a handshake failure, so those labelled series exist.
    let _ = try_upgrade(gateway.ws_addr(), "/");
    let mut client = connect(gateway.ws_addr(), "/echo");
    client.close(None).expect("close");

    let mut jobs = vec![ScrapeJob {
        name: "ringcast".into(),
        targets: vec![gateway.admin],
    }];
    if wsload_metrics {
        jobs.push(ScrapeJob {
            name: "wsload".into(),
            targets: vec![wsload_addr],
        });
    }
    let prometheus = Prometheus::start(&jobs, &[&repo_file(RULES)]);
    // About ten scrapes with deliveries and pings flowing, and the rules evaluated.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let scraped = prometheus
            .query("count_over_time(ringcast_messages_delivered_total[1m]) >= 10")
            .is_ok_and(|r| !r.is_empty());
        let recorded = prometheus
            .query("instance:ringcast_messages_delivered:rate1m > 0")
            .is_ok_and(|r| !r.is_empty());
        if scraped && recorded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped enough samples"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let live: BTreeSet<String> = prometheus.metric_names().into_iter().collect();
    let telemetry_names = read("crates/telemetry/src/names.rs");

    let mut failures = Vec::new();
    let mut notes = BTreeSet::new();
    let mut check_names = |place: &str, expr: &str, failures: &mut Vec<String>| -> bool {
        let mut all_live = true;
        for name in metric_names(expr) {
            if live.contains(&name) {
                continue;
            }
            all_live = false;
            let base = family(&name);
            if name.starts_with("wsload_") && !wsload_metrics {
                if WSLOAD_SPECIFIED.contains(&base) {
                    notes.insert(format!(
                        "{name}: checked against PROJECT.md's wsload list (wsload has no --metrics yet)"
                    ));
                } else {
                    failures.push(format!("{place}: {name} is not a specified wsload metric"));
                }
            } else if NOT_YET_EXPORTED.contains(&base)
                && telemetry_names.contains(&format!("\"{base}\""))
            {
                notes.insert(format!(
                    "{name}: defined in names.rs, exported only with a Redis broker"
                ));
            } else {
                failures.push(format!("{place}: {name} is not in the live scrape"));
            }
        }
        all_live
    };

    let mut queries = Vec::new();
    let mut variables = Vec::new();
    for file in DASHBOARDS {
        let dashboard: Value = serde_json::from_str(&read(file)).expect("dashboard JSON");
        panel_queries(&dashboard, file, &mut queries);
        variables.extend(variable_queries(&dashboard, file));
    }
    assert!(
        queries.len() >= 30,
        "too few panel queries found: {}",
        queries.len()
    );
    for (place, expr) in &queries {
        let expr = substitute(expr);
        let all_live = check_names(place, &expr, &mut failures);
        match prometheus.query(&expr) {
            Err(e) => failures.push(format!("{place}: {expr}\n    {e}")),
            Ok(result) if result.is_empty() && all_live => failures.push(format!(
                "{place}: no data although its metrics are live: {expr}"
            )),
            Ok(_) => {}
        }
    }
    for (place, selector, label) in &variables {
        let selector = substitute(selector);
        check_names(place, &selector, &mut failures);
        match prometheus.label_values(label, &selector) {
            Err(e) => failures.push(format!("{place}: {selector}\n    {e}")),
            Ok(values) if values.is_empty() => {
                failures.push(format!("{place}: no {label} values for {selector}"))
            }
            Ok(_) => {}
        }
    }
    let rules = rule_queries();
    assert!(rules.len() >= 12, "too few rules parsed");
    for (place, expr, record) in &rules {
        let all_live = check_names(place, expr, &mut failures);
        match prometheus.query(expr) {
            Err(e) => failures.push(format!("{place}: {expr}\n    {e}")),
            Ok(result) if result.is_empty() && *record && all_live => {
                failures.push(format!("{place}: recording rule has no data: {expr}"))
            }
            Ok(_) => {}
        }
    }
    for note in &notes {
        eprintln!("NOTE: {note}");
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
