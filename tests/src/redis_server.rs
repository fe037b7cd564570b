//! A real `redis-server` for one test: started on a free loopback port without
//! persistence, ready once it answers PING, killed by pid (and restartable on the same
//! port), plus a tiny blocking RESP client to publish and to ask `PUBSUB` questions.
//! Optionally ([`RedisOptions`]) it also serves TLS on a second port and has ACL users
//! instead of the default user; the helper's own commands then log in on the plain port.
//! A server can also start as a replica ([`RedisOptions::replica_of`]), and
//! [`Sentinel`] runs a `redis-server --sentinel` watching a master. [`RedisCluster`]
//! starts the nodes of a Redis Cluster and creates it with `redis-cli --cluster create`.

use crate::ports::free_port;
use crate::proc_stats;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR ...`.
    Error(String),
    /// `:N`.
    Int(i64),
    /// `$N` bulk string (`None` for the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// `*N` array.
    Array(Vec<Reply>),
}

impl Reply {
    /// The integer of an `Int` reply.
    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// The bulk strings of an `Array` reply, as text.
    pub fn strings(&self) -> Vec<String> {
        match self {
            Reply::Array(items) => items
                .iter()
                .filter_map(|item| match item {
                    Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                    Reply::Status(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            other => panic!("expected an array reply, got {other:?}"),
        }
    }
}

/// How a server is set up beyond the plain default.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Also serve TLS on a second free port with this certificate chain and key (PEM
    /// files; clients are not asked for certificates).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// ACL users `(name, password)`, each allowed every command, key and channel. With
    /// any, the default user is off and the helper's own commands log in as the first.
    pub users: Vec<(String, String)>,
    /// Start as a replica of the server on `127.0.0.1:PORT` (`--replicaof`).
    pub replica_of: Option<u16>,
    /// Start as a Redis Cluster node (node timeout 2 s) keeping its cluster state file
    /// in this directory, so a restart rejoins the cluster.
    pub cluster_dir: Option<PathBuf>,
}

/// A `redis-server` child process on `127.0.0.1:port`.
pub struct RedisServer {
    child: Option<Child>,
    /// The port it listens on (kept across restarts).
    pub port: u16,
    /// The TLS port, with [`RedisOptions::tls`] (kept across restarts).
    pub tls_port: Option<u16>,
    /// The cluster bus port, with [`RedisOptions::cluster_dir`] (a free port of its own:
    /// the default, port + 10,000, may be taken or out of range).
    pub bus_port: Option<u16>,
    options: RedisOptions,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        RedisServer::start_with(RedisOptions::default())
    }

    /// Starts a server set up as `options` say and waits until it answers PING.
    pub fn start_with(options: RedisOptions) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            tls_port: options.tls.as_ref().map(|_| free_port()),
            bus_port: options.cluster_dir.as_ref().map(|_| free_port()),
            options,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `rediss://user:password@127.0.0.1:TLS_PORT/0`; panics without TLS.
    pub fn tls_url(&self, user: &str, password: &str) -> String {
        let port = self.tls_port.expect("a server started with TLS");
        format!("rediss://{user}:{password}@127.0.0.1:{port}/0")
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL (by pid) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"]);
        if let (Some((cert, key)), Some(port)) = (&self.options.tls, self.tls_port) {
            command
                .args(["--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .args(["--tls-auth-clients", "no"]);
        }
        for (name, password) in &self.options.users {
            command
                .args(["--user", name, "on", &format!(">{password}")])
                .args(["~*", "&*", "+@all"]);
        }
        if !self.options.users.is_empty() {
            command.args(["--user", "default", "off"]);
        }
        if let Some(master) = self.options.replica_of {
            // Loads the master's data straight from the socket, so no dump.rdb is left in
            // the working directory.
            command
                .args(["--replicaof", "127.0.0.1", &master.to_string()])
                .args(["--repl-diskless-load", "on-empty-db"]);
        }
        if let (Some(dir), Some(bus)) = (&self.options.cluster_dir, self.bus_port) {
            command
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .args(["--cluster-port", &bus.to_string()])
                .arg("--cluster-config-file")
                .arg(dir.join(format!("nodes-{}.conf", self.port)))
                .arg("--dir")
                .arg(dir);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .try_command(&[b"PING"])
                .is_ok_and(|r| r == Reply::Status("PONG".into()))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} never answered PING", self.port);
    }

    /// Sends one command on a new connection; panics on I/O errors.
    pub fn command(&self, args: &[&[u8]]) -> Reply {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis command {:?}: {e}", String::from_utf8_lossy(args[0])))
    }

    /// Sends one command on a new connection.
    pub fn try_command(&self, args: &[&[u8]]) -> std::io::Result<Reply> {
        command_on(self.port, self.options.users.first(), args)
    }

    /// The first word of `ROLE` (`master` or `slave`), if the server answers.
    pub fn role(&self) -> Option<String> {
        match self.try_command(&[b"ROLE"]).ok()? {
            reply @ Reply::Array(_) => reply.strings().into_iter().next(),
            _ => None,
        }
    }

    /// `PUBLISH channel payload`; returns the number of receivers.
    pub fn publish(&self, channel: &str, payload: &[u8]) -> i64 {
        self.command(&[b"PUBLISH", channel.as_bytes(), payload])
            .int()
    }

    /// Runs `redis-cli -p PORT args...` and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args(["-p", &self.port.to_string()]);
        if let Some((name, password)) = self.options.users.first() {
            command
                .args(["--user", name, "--pass", password])
                .arg("--no-auth-warning");
        }
        let out = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running redis-cli (apt-get install redis-tools)");
        assert!(out.status.success(), "redis-cli {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `PUBSUB CHANNELS pattern`.
    pub fn channels(&self, pattern: &str) -> Vec<String> {
        let mut names = self
            .command(&[b"PUBSUB", b"CHANNELS", pattern.as_bytes()])
            .strings();
        names.sort();
        names
    }

    /// Subscribers of `channel` (`PUBSUB NUMSUB`, or `SHARDNUMSUB` when `sharded`).
    pub fn subscribers(&self, channel: &str, sharded: bool) -> i64 {
        let sub: &[u8] = if sharded { b"SHARDNUMSUB" } else { b"NUMSUB" };
        match self.command(&[b"PUBSUB", sub, channel.as_bytes()]) {
            Reply::Array(items) => items.get(1).map_or(0, Reply::int),
            other => panic!("PUBSUB NUMSUB: {other:?}"),
        }
    }

    /// Pattern subscriptions over all clients (`PUBSUB NUMPAT`).
    pub fn patterns(&self) -> i64 {
        self.command(&[b"PUBSUB", b"NUMPAT"]).int()
    }

    /// Polls until `done()` holds; panics with `what` after `secs`.
    pub fn wait_until(&self, what: &str, secs: u64, done: impl Fn(&RedisServer) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if done(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis: {what} did not happen within {secs} s");
    }

    /// utime + stime of the server so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.pid().map_or(0.0, proc_stats::cpu_seconds)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends one command to `127.0.0.1:port` on a new connection, logging in as `user`.
fn command_on(
    port: u16,
    user: Option<&(String, String)>,
    args: &[&[u8]],
) -> std::io::Result<Reply> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    if let Some((name, password)) = user {
        stream.write_all(&encode(&[b"AUTH", name.as_bytes(), password.as_bytes()]))?;
        match read_reply(&mut reader)? {
            Reply::Status(_) => {}
            other => return Err(std::io::Error::other(format!("AUTH: {other:?}"))),
        }
    }
    stream.write_all(&encode(args))?;
    read_reply(&mut reader)
}

/// A `redis-server --sentinel` on `127.0.0.1:port` monitoring one master as
/// `mymaster` (quorum 1, down after 1 s, failover timeout 5 s), its config file (which
/// Sentinel rewrites) in a temporary directory of its own; killed by pid on drop.
pub struct Sentinel {
    child: Option<Child>,
    /// The port it listens on.
    pub port: u16,
    dir: PathBuf,
}

impl Sentinel {
    /// The master name the Sentinel monitors.
    pub const MASTER: &'static str = "mymaster";

    /// Starts a Sentinel watching the master on `127.0.0.1:master_port` and waits until
    /// it names that master.
    pub fn start(master_port: u16) -> Sentinel {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("ringcast-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("sentinel dir");
        let conf = dir.join("sentinel.conf");
        let name = Sentinel::MASTER;
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 5000\n",
                dir = dir.display()
            ),
        )
        .expect("sentinel config");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server --sentinel");
        let sentinel = Sentinel {
            child: Some(child),
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if sentinel.master_port() == Some(master_port) {
                return sentinel;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the Sentinel on port {port} never named the master");
    }

    /// The master's port as the Sentinel names it now.
    pub fn master_port(&self) -> Option<u16> {
        let reply = command_on(
            self.port,
            None,
            &[
                b"SENTINEL",
                b"get-master-addr-by-name",
                Sentinel::MASTER.as_bytes(),
            ],
        )
        .ok()?;
        match reply {
            Reply::Array(_) => reply.strings().get(1)?.parse().ok(),
            _ => None,
        }
    }

    /// Sends one command to the Sentinel on a new connection.
    pub fn command(&self, args: &[&[u8]]) -> std::io::Result<Reply> {
        command_on(self.port, None, args)
    }

    /// The Sentinel's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the Sentinel with SIGKILL (by pid) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster on loopback: `masters` masters with `replicas` replicas each, created
/// with `redis-cli --cluster create`, its state files in a temporary directory removed on
/// drop; every node is killed by pid.
pub struct RedisCluster {
    /// Every node, masters and replicas (which is which changes with failovers).
    pub nodes: Vec<RedisServer>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until every node says
    /// `cluster_state:ok`.
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "ringcast-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                RedisServer::start_with(RedisOptions {
                    cluster_dir: Some(dir.clone()),
                    ..RedisOptions::default()
                })
            })
            .collect();
        let cluster = RedisCluster { nodes, dir };
        let mut command = Command::new("redis-cli");
        command.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            command.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = command
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("running redis-cli --cluster create (apt-get install redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_ok(30);
        cluster
    }

    /// Waits until every running node says `cluster_state:ok` and sees every slot
    /// served, and every replica has synced with its master (only a synced replica is
    /// promoted), at most `secs`.
    pub fn wait_ok(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let ok = self.nodes.iter().filter(|n| n.pid().is_some()).all(|n| {
                n.try_command(&[b"CLUSTER", b"INFO"])
                    .ok()
                    .and_then(|r| match r {
                        Reply::Bulk(Some(text)) => {
                            Some(String::from_utf8_lossy(&text).into_owned())
                        }
                        _ => None,
                    })
                    .is_some_and(|info| {
                        info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                    })
                    && (n.role().as_deref() != Some("slave")
                        || n.cli(&["INFO", "replication"])
                            .contains("master_link_status:up"))
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster is not ok after {secs} s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis://127.0.0.1:P1,127.0.0.1:P2...` naming the first `seeds` nodes.
    pub fn url(&self, seeds: usize) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .take(seeds)
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis://{}", hosts.join(","))
    }

    /// A running node, to ask questions.
    pub fn any(&self) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.pid().is_some() && n.try_command(&[b"PING"]).is_ok())
            .expect("a running cluster node")
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot(&self, key: &str) -> u16 {
        self.any()
            .command(&[b"CLUSTER", b"KEYSLOT", key.as_bytes()])
            .int() as u16
    }

    /// `(first slot, last slot, master port)` as a running node sees them now.
    pub fn slot_ranges(&self) -> Vec<(u16, u16, u16)> {
        let Reply::Array(ranges) = self.any().command(&[b"CLUSTER", b"SLOTS"]) else {
            panic!("CLUSTER SLOTS is not an array");
        };
        ranges
            .into_iter()
            .filter_map(|range| match range {
                Reply::Array(fields) => match (fields.first(), fields.get(1), fields.get(2)) {
                    (
                        Some(Reply::Int(start)),
                        Some(Reply::Int(end)),
                        Some(Reply::Array(master)),
                    ) => {
                        let port = master.get(1).map_or(0, Reply::int);
                        Some((*start as u16, *end as u16, port as u16))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// The port of the master owning `slot`, as a running node sees it now.
    pub fn master_of(&self, slot: u16) -> u16 {
        self.slot_ranges()
            .into_iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, port)| port)
            .unwrap_or_else(|| panic!("no master owns slot {slot}"))
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node of the cluster")
    }

    /// The node on `port`, to kill or restart it.
    pub fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of the cluster")
    }

    /// The ports of the masters, as a running node sees them now.
    pub fn master_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .slot_ranges()
            .into_iter()
            .map(|(_, _, port)| port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The node id of the node on `port` (`CLUSTER MYID`).
    pub fn id(&self, port: u16) -> String {
        match self.node(port).command(&[b"CLUSTER", b"MYID"]) {
            Reply::Bulk(Some(id)) => String::from_utf8_lossy(&id).into_owned(),
            other => panic!("CLUSTER MYID: {other:?}"),
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One command as a RESP array of bulk strings.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_line(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "redis closed the connection",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn number(text: &str) -> std::io::Result<i64> {
    text.parse()
        .map_err(|_| std::io::Error::other(format!("bad RESP number {text:?}")))
}

/// Reads one RESP2 reply.
fn read_reply(reader: &mut impl BufRead) -> std::io::Result<Reply> {
    let line = read_line(reader)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(number(rest)?),
        "$" => match number(rest)? {
            n if n < 0 => Reply::Bulk(None),
            n => {
                let mut data = vec![0u8; n as usize + 2];
                reader.read_exact(&mut data)?;
                data.truncate(n as usize);
                Reply::Bulk(Some(data))
            }
        },
        "*" => {
            let n = number(rest)?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_reply(reader)?);
            }
            Reply::Array(items)
        }
        _ => return Err(std::io::Error::other(format!("bad RESP line {line:?}"))),
    })
}
