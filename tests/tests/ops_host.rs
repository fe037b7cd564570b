//! Host deployment files checked by the real tools: ops/sysctl/99-ringcast.conf applied
//! with procps `sysctl` inside a throwaway network namespace (per-namespace keys) and
//! checked against this kernel's /proc/sys (global keys), ops/limits against
//! limits.conf(5), and ops/systemd/ringcast.service through `systemd-analyze verify` and
//! `systemd-analyze security`, plus the unit's syscall filter, expanded by systemd
//! itself, enforced with libseccomp around a real gateway.

mod ops_support;

use ops_support::seccomp::{SeccompGateway, python_seccomp};
use ops_support::*;
use ringcast_tests::http;
use ringcast_tests::programs::binary;
use ringcast_tests::ws_client::{connect, next_message};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tungstenite::Message;

const SYSCTL: &str = "ops/sysctl/99-ringcast.conf";
const LIMITS: &str = "ops/limits/99-ringcast.conf";
const UNIT: &str = "ops/systemd/ringcast.service";
const TLS_DROP_IN: &str = "ops/systemd/ringcast.service.d/tls.conf";

/// Keys of the file that every network namespace has its own copy of (the rest are
/// global, or exist only in the host's namespace, like tcp_mem and nf_conntrack_max).
const PER_NETNS: [&str; 7] = [
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_max_tw_buckets",
];

/// `/proc/sys` path of a dotted sysctl key.
fn proc_path(key: &str) -> std::path::PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

fn sysctl_entries() -> Vec<(String, String, bool)> {
    key_values(&read(SYSCTL), '=')
        .into_iter()
        .map(|(k, v)| match k.strip_prefix('-') {
            Some(key) => (key.to_owned(), v, true),
            None => (k, v, false),
        })
        .collect()
}

fn sysctl_value(key: &str) -> u64 {
    let (_, value, _) = sysctl_entries()
        .into_iter()
        .find(|(k, _, _)| k == key)
        .unwrap_or_else(|| panic!("{SYSCTL} lacks {key}"));
    value.parse().expect("numeric sysctl")
}

/// `Key=value` settings of the unit's [Service] section (repeated keys: all values).
fn unit_settings(key: &str) -> Vec<String> {
    read(UNIT)
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

fn unit_env(name: &str) -> f64 {
    unit_settings("Environment")
        .iter()
        .find_map(|e| e.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{UNIT} sets no {name}"))
        .parse()
        .expect("number")
}

#[test]
fn sysctl_keys_exist_and_apply_with_procps_sysctl() {
    let entries = sysctl_entries();
    assert!(entries.len() >= 12, "{SYSCTL} has too few settings");
    for (key, value, optional) in &entries {
        let path = proc_path(key);
        if !path.exists() {
            assert!(
                *optional,
                "{key} does not exist on this kernel: mark it optional with a leading '-'"
            );
            continue;
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if key == "net.ipv4.ip_local_reserved_ports" {
            continue;
        }
        let want: Vec<&str> = value.split_whitespace().collect();
        assert_eq!(
            want.len(),
            current.split_whitespace().count(),
            "{key}: field count differs from the kernel's ({current:?})"
        );
        assert!(
            want.iter().all(|f| f.parse::<u64>().is_ok()),
            "{key} = {value}: not numeric"
        );
    }
    assert!(sysctl_value("fs.file-max") >= sysctl_value("fs.nr_open"));
    assert_eq!(
        read(SYSCTL),
        read("ops/k8s/host-tuning/99-ringcast.conf"),
        "the Kubernetes host-tuning copy drifted from {SYSCTL}"
    );

    // The per-network-namespace keys, written for real by procps sysctl inside a fresh
    // network namespace (so the host is untouched) and read back.
    let Some(unshare) = system_tool("unshare") else {
        return missing("unshare", "Debian util-linux");
    };
    let Some(sysctl) = system_tool("sysctl") else {
        return missing("sysctl", "Debian procps");
    };
    let probe = run(Command::new(&unshare).args(["--net", "true"]), 10);
    if !probe.status.success() {
        eprintln!(
            "SKIP netns part: cannot create a network namespace here: {}",
            both(&probe)
        );
        return;
    }
    let scratch = Scratch::new("sysctl");
    let net_only: String = entries
        .iter()
        .filter(|(k, _, _)| PER_NETNS.contains(&k.as_str()))
        .map(|(k, v, _)| format!("{k} = {v}\n"))
        .collect();
    std::fs::write(scratch.join("net.conf"), net_only).expect("write");
    let out = run_ok(
        Command::new(&unshare)
            .arg("--net")
            .arg(&sysctl)
            .arg("-p")
            .arg(scratch.join("net.conf")),
        20,
    );
    let applied = key_values(&out, '=');
    for key in PER_NETNS {
        let (_, want, _) = entries.iter().find(|(k, _, _)| k == key).expect("key");
        let got = applied
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "));
        assert_eq!(
            got.as_deref(),
            Some(want.as_str()),
            "sysctl did not apply {key} in a network namespace:\n{out}"
        );
    }
}

#[test]
fn limits_file_follows_limits_conf_and_matches_the_unit() {
    const ITEMS: [&str; 17] = [
        "core",
        "data",
        "fsize",
        "memlock",
        "nofile",
        "rss",
        "stack",
        "cpu",
        "nproc",
        "as",
        "maxlogins",
        "maxsyslogins",
        "priority",
        "locks",
        "sigpending",
        "msgqueue",
        "rtprio",
    ];
    let text = read(LIMITS);
    let mut seen = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 4, "limits.conf(5) needs 4 fields: {line}");
        let [domain, kind, item, value] = [fields[0], fields[1], fields[2], fields[3]];
        assert!(!domain.is_empty());
        assert!(["soft", "hard", "-"].contains(&kind), "type {kind}: {line}");
        assert!(ITEMS.contains(&item), "item {item}: {line}");
        assert!(
            value.parse::<u64>().is_ok() || ["unlimited", "infinity"].contains(&value),
            "value {value}: {line}"
        );
        seen.insert((item.to_owned(), value.to_owned()));
    }
    let nofile: Vec<u64> = seen
        .iter()
        .filter(|(i, _)| i == "nofile")
        .map(|(_, v)| v.parse().expect("nofile"))
        .collect();
    let unit_nofile: u64 = unit_settings("LimitNOFILE")[0]
        .parse()
        .expect("LimitNOFILE");
    assert!(!nofile.is_empty() && nofile.iter().all(|&n| n == unit_nofile));
    assert!(
        unit_nofile <= sysctl_value("fs.nr_open"),
        "RLIMIT_NOFILE above fs.nr_open cannot be set"
    );
    let memlock_kib: Vec<u64> = seen
        .iter()
        .filter(|(i, _)| i == "memlock")
        .map(|(_, v)| v.parse().expect("memlock"))
        .collect();
    let unit_memlock = unit_settings("LimitMEMLOCK")[0].clone();
    let unit_kib = unit_memlock
        .strip_suffix('M')
        .and_then(|m| m.parse::<u64>().ok())
        .map(|m| m * 1024)
        .expect("LimitMEMLOCK in M");
    assert!(!memlock_kib.is_empty() && memlock_kib.iter().all(|&k| k == unit_kib));
}

/// A root directory for `systemd-analyze --root`: the host's unit tree (sysinit.target
/// and friends), our unit, and the real binary at the unit's ExecStart path.
fn unit_root() -> Scratch {
    let root = Scratch::new("systemd-root");
    let units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .find(|p| Path::new(p).join("sysinit.target").exists())
        .expect("the host's systemd unit directory");
    std::fs::create_dir_all(root.join("usr/lib/systemd")).expect("mkdir");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(units)
            .arg(root.join("usr/lib/systemd/system")),
        30,
    );
    std::fs::create_dir_all(root.join("etc/systemd/system")).expect("mkdir");
    std::fs::copy(
        repo_file(UNIT),
        root.join("etc/systemd/system/ringcast.service"),
    )
    .expect("copy unit");
    std::fs::create_dir_all(root.join("etc/systemd/system/ringcast.service.d")).expect("mkdir");
    std::fs::copy(
        repo_file(TLS_DROP_IN),
        root.join("etc/systemd/system/ringcast.service.d/tls.conf"),
    )
    .expect("copy drop-in");
    // Every command the unit names must exist in the root: ringcast, and the reload's
    // kill (the host's own).
    for (key, source) in [
        ("ExecStart", binary("ringcast")),
        ("ExecReload", "/bin/kill".into()),
    ] {
        let exec = unit_settings(key)[0].clone();
        let exec_path = exec.split_whitespace().next().expect("command path");
        let target = root.0.join(exec_path.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(source, &target).expect("copy command");
    }
    root
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let Some(analyze) = system_tool("systemd-analyze") else {
        return missing("systemd-analyze", "Debian systemd");
    };
    let grace = unit_env("RINGCAST_DRAIN_GRACE");
    let drain = unit_env("RINGCAST_DRAIN_SECONDS");
    let stop: f64 = unit_settings("TimeoutStopSec")[0].parse().expect("seconds");
    assert!(
        stop > grace + drain + 5.0,
        "TimeoutStopSec {stop} must exceed drain grace {grace} + drain {drain} with margin"
    );
    let root = unit_root();
    let root_arg = format!("--root={}", root.0.display());
    let out = run(
        Command::new(&analyze).args(["verify", &root_arg, "ringcast.service"]),
        60,
    );
    assert!(
        out.status.success() && both(&out).trim().is_empty(),
        "systemd-analyze verify: {}\n{}",
        out.status,
        both(&out)
    );
    // Exposure 2.0 ("OK") or better; the threshold is the exposure times ten.
    let out = run(
        Command::new(&analyze).args([
            "security",
            "--offline=yes",
            "--threshold=20",
            "--no-pager",
            &root_arg,
            "ringcast.service",
        ]),
        60,
    );
    let text = both(&out);
    assert!(
        out.status.success() && !text.contains("ignoring"),
        "systemd-analyze security: {}\n{text}",
        out.status
    );
}

/// Syscall names of a systemd filter set, nested sets expanded by systemd-analyze.
fn syscall_set(analyze: &Path, group: &str, into: &mut BTreeSet<String>) {
    let out = run_ok(Command::new(analyze).args(["syscall-filter", group]), 20);
    for line in out.lines().skip(1).map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            syscall_set(analyze, line, into);
        } else {
            into.insert(line.to_owned());
        }
    }
}

/// Health, an echo round trip and a publish delivered, then SIGTERM and a clean exit.
fn serves_and_drains(mut gateway: SeccompGateway) {
    gateway.wait_healthy("the seccomp filter");
    let mut echo = connect(gateway.ws, "/echo");
    echo.send(Message::text("ping through seccomp"))
        .expect("send");
    let back = next_message(&mut echo, Duration::from_secs(5)).expect("echo");
    assert_eq!(back, Some(Message::text("ping through seccomp")));
    assert!(
        http::wait_until(
            gateway.admin,
            "/metrics",
            10,
            Duration::from_millis(100),
            |body| { body.contains("ringcast_connections{") }
        ),
        "no shard metrics under the filter"
    );
    let status = gateway.terminate("the seccomp filter");
    assert!(
        status.success(),
        "ringcast exited with {status} after SIGTERM"
    );
}

#[test]
fn systemd_syscall_filter_lets_ringcast_serve() {
    let Some(analyze) = system_tool("systemd-analyze") else {
        return missing("systemd-analyze", "Debian systemd");
    };
    if !python_seccomp() {
        return missing("python3 -c 'import seccomp'", "Debian python3-seccomp");
    }
    // SystemCallFilter= lines: allow-lists first, then `~` deny-lists, as systemd applies them.
    let mut allowed = BTreeSet::new();
    let mut denied = BTreeSet::new();
    for filter in unit_settings("SystemCallFilter") {
        let (set, list) = match filter.strip_prefix('~') {
            Some(rest) => (&mut denied, rest.to_owned()),
            None => (&mut allowed, filter.clone()),
        };
        for item in list.split_whitespace() {
            if item.starts_with('@') {
                syscall_set(&analyze, item, set);
            } else {
                set.insert(item.to_owned());
            }
        }
    }
    let names: Vec<&String> = allowed.difference(&denied).collect();
    for needed in [
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "sched_setaffinity",
    ] {
        assert!(
            names.iter().any(|n| *n == needed),
            "the unit's SystemCallFilter denies {needed}"
        );
    }
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}],
    });
    let scratch = Scratch::new("systemd-filter");
    let path = scratch.join("filter.json");
    std::fs::write(&path, profile.to_string()).expect("write profile");
    serves_and_drains(SeccompGateway::start(&path, ""));
}
