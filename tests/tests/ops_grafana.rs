//! grafana/ dashboards and provisioning: valid JSON at the current dashboard
//! schemaVersion (42, as in @grafana/schema 13), the two dashboards the issue names, the
//! datasource/job/instance/shard template variables, every panel on the $datasource
//! variable with a unique id and a grid position that fits and overlaps nothing, every
//! query target with an expression, and provisioning files that point at them. The
//! expressions themselves run on a live Prometheus in ops_prometheus.rs.

mod ops_support;

use ops_support::*;
use serde_json::Value;
use std::collections::BTreeSet;

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
        "ringcast_fanout_seconds_bucket",
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
