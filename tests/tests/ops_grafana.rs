//! grafana/ dashboards and provisioning: type-checked by tsc against Grafana's own
//! schema package (@grafana/schema from npm: the dashboard model and the timeseries, stat
//! and heatmap panel options, installed with `npm ci` from grafana/schema-check's lock
//! file into the target directory), the current dashboard schemaVersion (42, as in
//! @grafana/schema 13), the two dashboards the issue names, the
//! datasource/job/instance/shard template variables, every panel on the $datasource
//! variable with a unique id and a grid position that fits and overlaps nothing, every
//! query target with an expression, and provisioning files that point at them. The
//! expressions themselves run on a live Prometheus in ops_prometheus.rs.

mod ops_support;

use ops_support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Grafana's current dashboard JSON schema version.
const SCHEMA_VERSION: u64 = 42;

const DASHBOARDS: [(&str, &str, &str); 2] = [
    (
        "grafana/dashboards/ringcast-overview.json",
        "ringcast-overview",
        "ringcast overview",
    ),
    (
        "grafana/dashboards/ringcast-capacity.json",
        "ringcast-capacity",
        "ringcast capacity test",
    ),
];

/// Every panel, rows' nested panels included.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel);
        out.extend(panel["panels"].as_array().into_iter().flatten());
    }
    out
}

fn check_dashboard(file: &str, uid: &str, title: &str) {
    let dashboard: Value = serde_json::from_str(&read(file)).expect("dashboard JSON");
    assert_eq!(
        dashboard["schemaVersion"].as_u64(),
        Some(SCHEMA_VERSION),
        "{file}"
    );
    assert_eq!(dashboard["uid"], uid, "{file}");
    assert_eq!(dashboard["title"], title, "{file}");
    assert!(
        dashboard.get("id").is_none(),
        "{file}: no fixed id (Grafana assigns it)"
    );

    let variables: Vec<&Value> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .collect();
    let names: Vec<&str> = variables
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["datasource", "job", "instance", "shard"], "{file}");
    assert_eq!(variables[0]["type"], "datasource");
    assert_eq!(variables[0]["query"], "prometheus");
    for variable in &variables[1..] {
        assert_eq!(variable["type"], "query", "{file}");
        assert_eq!(variable["datasource"]["uid"], "${datasource}", "{file}");
        assert_eq!(variable["includeAll"], true, "{file}");
        assert_eq!(variable["allValue"], ".*", "{file}");
    }

    let panels = all_panels(&dashboard);
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    let mut queries = 0;
    for panel in &panels {
        let id = panel["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "{file}: duplicate panel id {id}");
        let title = panel["title"].as_str().expect("title");
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().expect("gridPos"));
        assert!(
            w > 0 && h > 0 && x + w <= 24,
            "{file}: {title} does not fit the grid"
        );
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "{file}: {title} overlaps another panel"
                );
            }
        }
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{file}: {title} needs a description"
        );
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{file}: {title}"
        );
        assert!(
            panel["fieldConfig"]["defaults"].is_object(),
            "{file}: {title}"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{file}: {title} has no query");
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            assert!(ref_ids.insert(target["refId"].as_str().expect("refId")));
            assert!(
                target["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{file}: {title}"
            );
            queries += 1;
        }
    }
    assert!(queries >= 10, "{file}: only {queries} queries");
}

#[test]
fn dashboards_follow_the_current_schema_and_layout_rules() {
    for (file, uid, title) in DASHBOARDS {
        check_dashboard(file, uid, title);
    }
}

#[test]
fn overview_and_capacity_dashboards_cover_what_operators_watch() {
    let overview = read(DASHBOARDS[0].0);
    for metric in [
        "ringcast_connections{",
        "ringcast_connections_accepted_total",
        "ringcast_connections_closed_total",
        "ringcast_pings_sent_total",
        "ringcast_pongs_received_total",
        "ringcast_ping_rtt_seconds_bucket",
        "ringcast_messages_delivered_total",
        "ringcast_bytes_sent_total",
        "ringcast_shard_queue_depth",
        "ringcast_slow_consumer_closes_total",
        "ringcast_broker_up",
        "ringcast_broker_latency_seconds_bucket",
        "ringcast_recoveries_total",
        "ringcast_history_messages",
        "ringcast_history_evictions_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(overview.contains(metric), "overview lacks {metric}");
    }
    let capacity = read(DASHBOARDS[1].0);
    for metric in [
        "wsload_connections_target",
        "wsload_connections)",
        "wsload_connect_errors_total",
        "wsload_latency_seconds_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            capacity.contains(metric),
            "capacity dashboard lacks {metric}"
        );
    }
    assert!(capacity.contains("\"type\": \"heatmap\""));
}

#[test]
fn provisioning_points_at_the_dashboards_and_a_prometheus() {
    let provider = read("grafana/provisioning/dashboards/ringcast.yaml");
    assert!(provider.contains("apiVersion: 1"));
    assert!(provider.contains("type: file"));
    assert!(provider.contains("path: /var/lib/grafana/dashboards/ringcast"));
    let datasource = read("grafana/provisioning/datasources/prometheus.yaml");
    assert!(datasource.contains("type: prometheus"));
    assert!(datasource.contains("timeInterval:"));
}

/// Panel types the dashboards use: (type, @grafana/schema panel module, has FieldConfig).
const PANEL_SCHEMAS: [(&str, &str, bool); 3] = [
    ("timeseries", "TimeSeries", true),
    ("stat", "Stat", false),
    ("heatmap", "Heatmap", true),
];

/// TypeScript that assigns each dashboard to `Dashboard` and each panel's options and
/// custom field config to its panel plugin's types. `Loose<T>` turns the schema's string
/// enums into their literal values (JSON holds strings, not enum members); object
/// literals keep TypeScript's excess-property check, so an unknown key is an error.
fn schema_check_source() -> String {
    let mut ts = String::from("import type { Dashboard } from \"@grafana/schema\";\n");
    for (_, module, field_config) in PANEL_SCHEMAS {
        let extra = if field_config {
            format!(", FieldConfig as {module}FieldConfig")
        } else {
            String::new()
        };
        let _ = writeln!(
            ts,
            "import type {{ Options as {module}Options{extra} }} from \"@grafana/schema/dist/esm/raw/composable/{}/panelcfg/x/{module}PanelCfg_types.gen\";",
            module.to_lowercase()
        );
    }
    ts.push_str(
        "type Loose<T> = T extends string ? `${T}` : T extends ReadonlyArray<infer U> ? Array<Loose<U>> : T extends object ? { [K in keyof T]: Loose<T[K]> } : T;\n",
    );
    for (file, uid, _) in DASHBOARDS {
        let dashboard: Value = serde_json::from_str(&read(file)).expect("dashboard JSON");
        let name = uid.replace('-', "_");
        let _ = writeln!(ts, "export const {name}: Loose<Dashboard> = {dashboard};");
        for panel in all_panels(&dashboard) {
            let kind = panel["type"].as_str().expect("type");
            if kind == "row" {
                continue;
            }
            let (_, module, field_config) = PANEL_SCHEMAS
                .iter()
                .find(|(t, _, _)| *t == kind)
                .unwrap_or_else(|| panic!("{file}: add panel type {kind} to PANEL_SCHEMAS"));
            let id = &panel["id"];
            let _ = writeln!(
                ts,
                "export const {name}_{id}_options: Loose<{module}Options> = {};",
                panel["options"]
            );
            let custom = &panel["fieldConfig"]["defaults"]["custom"];
            if *field_config && !custom.is_null() {
                let _ = writeln!(
                    ts,
                    "export const {name}_{id}_custom: Loose<{module}FieldConfig> = {custom};"
                );
            }
        }
    }
    ts
}

#[test]
fn dashboards_type_check_against_grafanas_schema() {
    let (Some(node), Some(npm)) = (system_tool("node"), system_tool("npm")) else {
        return missing("node and npm", "the machine's Node.js");
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("grafana-schema-check");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let lock = read("grafana/schema-check/package-lock.json");
    let installed = std::fs::read_to_string(dir.join("installed-lock.json")).unwrap_or_default();
    if installed != lock || !dir.join("node_modules/typescript/bin/tsc").exists() {
        for name in ["package.json", "package-lock.json"] {
            std::fs::copy(
                repo_file(&format!("grafana/schema-check/{name}")),
                dir.join(name),
            )
            .expect("copy npm manifest");
        }
        let out = run(
            Command::new(npm)
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir),
            300,
        );
        if !out.status.success() {
            return missing(
                "@grafana/schema + typescript",
                &format!("npm ci failed: {}", both(&out).trim()),
            );
        }
        std::fs::write(dir.join("installed-lock.json"), &lock).expect("record lock");
    }
    std::fs::write(dir.join("check.ts"), schema_check_source()).expect("write check.ts");
    std::fs::write(
        dir.join("tsconfig.json"),
        r#"{"compilerOptions": {"strict": true, "noEmit": true, "module": "esnext",
            "moduleResolution": "bundler", "target": "es2022", "types": []},
            "files": ["check.ts"]}"#,
    )
    .expect("write tsconfig.json");
    let out = run(
        Command::new(node)
            .arg(dir.join("node_modules/typescript/bin/tsc"))
            .arg("-p")
            .arg(&dir),
        120,
    );
    assert!(
        out.status.success(),
        "tsc against @grafana/schema (check.ts in {}):\n{}",
        dir.display(),
        both(&out)
    );
}
