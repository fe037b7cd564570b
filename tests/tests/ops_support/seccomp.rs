//! A real gateway under a seccomp profile: the libseccomp runner that loads an OCI/Docker
//! profile and execs ringcast under it, starting ringcast that way on free loopback ports,
//! waiting for it to be healthy, and stopping it with SIGTERM.

use super::Killed;
use ringcast_tests::http;
use ringcast_tests::ports::free_port;
use ringcast_tests::programs::binary;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Python (Debian's /usr/bin/python3 with python3-seccomp) program that loads a seccomp
/// profile in the OCI/Docker JSON format (defaultAction, defaultErrnoRet,
/// architectures, syscalls[names, action, errnoRet, args]) with libseccomp and execs a
/// command under it. argv: PROFILE DROP_NAMES(comma list, may be empty) CMD ARGS...
pub const SECCOMP_EXEC_PY: &str = r#"
import json, os, sys
import seccomp
profile = json.load(open(sys.argv[1]))
drop = set(filter(None, sys.argv[2].split(",")))
arch = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}[os.uname().machine]
if arch not in profile["architectures"]:
    sys.exit("profile lacks this machine's architecture " + arch)
default_errno = profile.get("defaultErrnoRet", 1)
def action(name, errno_ret):
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(errno_ret)
    sys.exit("unsupported action " + name)
ops = {"SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ, "SCMP_CMP_EQ": seccomp.EQ, "SCMP_CMP_NE": seccomp.NE}
f = seccomp.SyscallFilter(action(profile["defaultAction"], default_errno))
for rule in profile["syscalls"]:
    act = action(rule["action"], rule.get("errnoRet", default_errno))
    args = []
    for a in rule.get("args", []):
        if a["op"] == "SCMP_CMP_MASKED_EQ":
            args.append(seccomp.Arg(a["index"], seccomp.MASKED_EQ, a["value"], a["valueTwo"]))
        else:
            args.append(seccomp.Arg(a["index"], ops[a["op"]], a["value"]))
    for name in rule["names"]:
        if name in drop:
            continue
        try:
            if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) < 0:
                continue
        except Exception:
            continue
        f.add_rule(act, name, *args)
f.load()
os.execv(sys.argv[3], sys.argv[3:])
"#;

/// Whether Debian's python3 has the libseccomp bindings (package python3-seccomp).
pub fn python_seccomp() -> bool {
    Path::new("/usr/bin/python3").exists()
        && Command::new("/usr/bin/python3")
            .args(["-c", "import seccomp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// A gateway started under a seccomp profile, killed (by its pid) when dropped.
pub struct SeccompGateway {
    /// The runner's process, which became ringcast.
    pub process: Killed,
    /// Its WebSocket listener.
    pub ws: SocketAddr,
    /// Its admin API.
    pub admin: SocketAddr,
}

/// The command that runs ringcast (2 shards, 1 s drain, RUST_LOG=warn) under the profile
/// at `profile` minus the syscalls named in `drop` (a comma list, may be empty), and the
/// free ports it will listen on (WebSocket, admin).
pub fn ringcast_under_seccomp(profile: &Path, drop: &str) -> (Command, SocketAddr, SocketAddr) {
    let ws: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut command = Command::new("/usr/bin/python3");
    command
        .arg("-c")
        .arg(SECCOMP_EXEC_PY)
        .arg(profile)
        .arg(drop)
        .arg(binary("ringcast"))
        .args(["--listen", &ws.to_string(), "--admin", &admin.to_string()])
        .args(["--shards", "2", "--drain-seconds", "1"])
        .env("RUST_LOG", "warn");
    (command, ws, admin)
}

impl SeccompGateway {
    /// Starts ringcast under the profile at `profile` minus `drop` (see
    /// [`ringcast_under_seccomp`]).
    pub fn start(profile: &Path, drop: &str) -> SeccompGateway {
        let (mut command, ws, admin) = ringcast_under_seccomp(profile, drop);
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 seccomp runner");
        SeccompGateway {
            process: Killed(child),
            ws,
            admin,
        }
    }

    /// The ringcast process.
    pub fn child(&mut self) -> &mut Child {
        &mut self.process.0
    }

    /// Waits up to 20 s for `/healthz` to answer 200; panics if ringcast exits first.
    /// `under` names the filter in the panics.
    pub fn wait_healthy(&mut self, under: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !http::get(self.admin, "/healthz").is_ok_and(|r| r.status == 200) {
            if let Ok(Some(status)) = self.child().try_wait() {
                panic!("ringcast exited under {under}: {status}");
            }
            assert!(Instant::now() < deadline, "ringcast never became healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits up to 20 s for ringcast to exit; its exit status.
    pub fn terminate(&mut self, under: &str) -> ExitStatus {
        let child = self.child();
        // SAFETY: kill(2) on the pid of our own child.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ringcast did not exit after SIGTERM under {under}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
