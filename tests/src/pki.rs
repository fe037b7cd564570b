//! Certificates for TLS tests, made by the `openssl` CLI (a tool nobody here wrote): a
//! root CA, an intermediate signed by it, and leaves for `127.0.0.1`/`localhost` signed
//! by the intermediate, served as a chain (leaf, intermediate) the client checks
//! against the root. Plus `openssl s_client` to see which certificate a port serves.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A directory of certificates for one test, removed at the end.
pub struct Pki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A root CA and an intermediate signed by it.
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("ringcast-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pki dir");
        std::fs::write(
            dir.join("ca.cnf"),
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
        )
        .expect("ca.cnf");
        let mut root = vec!["req", "-x509", "-nodes"];
        root.extend_from_slice(EC);
        root.extend_from_slice(&["-keyout", "root.key", "-out", "root.pem", "-days", "2"]);
        root.extend_from_slice(&["-subj", "/CN=ringcast test root"]);
        openssl(&dir, &root);
        let mut int = vec!["req", "-nodes"];
        int.extend_from_slice(EC);
        int.extend_from_slice(&["-keyout", "int.key", "-out", "int.csr"]);
        int.extend_from_slice(&["-subj", "/CN=ringcast test intermediate"]);
        openssl(&dir, &int);
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "int.csr",
                "-CA",
                "root.pem",
                "-CAkey",
                "root.key",
                "-CAcreateserial",
                "-out",
                "int.pem",
                "-days",
                "2",
                "-extfile",
                "ca.cnf",
            ],
        );
        Pki { dir }
    }

    /// A leaf for 127.0.0.1 and localhost signed by the intermediate, written as
    /// `<name>.chain.pem` (leaf, then intermediate) and `<name>.key`; its serial.
    pub fn leaf(&self, name: &str, key: &[&str]) -> String {
        std::fs::write(
            self.dir.join("leaf.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("leaf.cnf");
        let key_file = format!("{name}.key");
        let csr = format!("{name}.csr");
        let mut req = vec!["req", "-nodes", "-keyout", &key_file, "-out", &csr];
        req.extend_from_slice(key);
        req.extend_from_slice(&["-subj", "/CN=localhost"]);
        openssl(&self.dir, &req);
        let leaf = format!("{name}.pem");
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "int.pem",
                "-CAkey",
                "int.key",
                "-CAcreateserial",
                "-out",
                &leaf,
                "-days",
                "2",
                "-extfile",
                "leaf.cnf",
            ],
        );
        let chain = [self.read(&leaf), self.read("int.pem")].concat();
        std::fs::write(self.path(&format!("{name}.chain.pem")), chain).expect("chain");
        serial_of(&self.path(&leaf))
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).expect("pki file")
    }

    /// Installs leaf `name` as the served files `served.pem` / `served.key`.
    pub fn serve(&self, name: &str) {
        for (from, to) in [(".chain.pem", "served.pem"), (".key", "served.key")] {
            let tmp = self.path(&format!("{to}.tmp"));
            std::fs::write(&tmp, self.read(&format!("{name}{from}"))).expect("write");
            std::fs::rename(&tmp, self.path(to)).expect("rename");
        }
    }

    pub fn tls_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path("served.pem").display().to_string(),
            "--tls-key".into(),
            self.path("served.key").display().to_string(),
        ]
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `openssl req` arguments for an ECDSA P-256 key.
pub const EC: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
/// `openssl req` arguments for an RSA 2048 key.
pub const RSA: &[&str] = &["-newkey", "rsa:2048"];

fn serial_of(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert)
        .output()
        .expect("openssl x509");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The serial of the certificate a new connection to `port` is served.
pub fn served_serial(port: u16) -> String {
    let s_client = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("openssl s_client");
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl x509");
    use std::io::Write;
    let _ = x509
        .stdin
        .take()
        .expect("stdin")
        .write_all(&s_client.stdout);
    let out = x509.wait_with_output().expect("x509 output");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
