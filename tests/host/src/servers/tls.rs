//! Test certificates made with the `openssl` CLI: a CA, a server certificate for
//! `IP:127.0.0.1` and `DNS:localhost`, client certificates, and an unrelated CA for "wrong CA"
//! tests. Keys come in the three PEM forms a client must read: PKCS#8, SEC1 and PKCS#1.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::util::scratch_dir;

/// Paths of the generated files (all PEM).
#[derive(Debug, Clone)]
pub struct TestCerts {
    /// Directory holding them.
    pub dir: PathBuf,
    /// The test CA's certificate.
    pub ca_cert: PathBuf,
    /// Server certificate (SANs `IP:127.0.0.1`, `DNS:localhost`), signed by the CA.
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
    /// Client certificate (EC P-256), signed by the CA.
    pub client_cert: PathBuf,
    /// Its key as PKCS#8 (`PRIVATE KEY`).
    pub client_key: PathBuf,
    /// The same key as SEC1 (`EC PRIVATE KEY`).
    pub client_key_sec1: PathBuf,
    /// An RSA client certificate, signed by the CA.
    pub client_rsa_cert: PathBuf,
    /// Its key as PKCS#1 (`RSA PRIVATE KEY`).
    pub client_rsa_key_pkcs1: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca_cert: PathBuf,
    /// Removes `dir` when the last clone is dropped.
    _cleanup: Arc<RemoveOnDrop>,
}

#[derive(Debug)]
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e} (install openssl)"));
    if !out.status.success() {
        panic!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

fn make_ca(dir: &Path, name: &str) {
    let mut args = vec!["req", "-x509", "-nodes", "-days", "3"];
    args.extend(EC);
    let (key, crt, subj) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("/CN={name}"),
    );
    args.extend([
        "-keyout",
        &key,
        "-out",
        &crt,
        "-subj",
        &subj,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &args);
}

/// A leaf certificate `name.crt` + `name.key` signed by `ca`, with the extension lines `ext`.
fn make_leaf(dir: &Path, name: &str, key_args: &[&str], ext: &str) {
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    let ext_file = format!("{name}.ext");
    std::fs::write(dir.join(&ext_file), ext).unwrap_or_else(|e| panic!("write ext: {e}"));
    let subj = format!("/CN={name}");
    let mut args = vec!["req", "-new", "-nodes"];
    args.extend(key_args);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
    openssl(dir, &args);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3",
            "-out",
            &crt,
            "-extfile",
            &ext_file,
        ],
    );
}

impl TestCerts {
    /// Generates a fresh set in a scratch directory (about 0.2 s: EC keys, one RSA key).
    pub fn generate() -> Self {
        let dir = scratch_dir("certs");
        make_ca(&dir, "ca");
        make_ca(&dir, "other-ca");
        make_leaf(
            &dir,
            "server",
            &EC,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        );
        let client_ext =
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
                          extendedKeyUsage=clientAuth\n";
        make_leaf(&dir, "client", &EC, client_ext);
        openssl(
            &dir,
            &["ec", "-in", "client.key", "-out", "client-sec1.key"],
        );
        make_leaf(&dir, "client-rsa", &["-newkey", "rsa:2048"], client_ext);
        openssl(
            &dir,
            &[
                "rsa",
                "-in",
                "client-rsa.key",
                "-traditional",
                "-out",
                "client-rsa-pkcs1.key",
            ],
        );
        let certs = Self {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            client_key_sec1: dir.join("client-sec1.key"),
            client_rsa_cert: dir.join("client-rsa.crt"),
            client_rsa_key_pkcs1: dir.join("client-rsa-pkcs1.key"),
            other_ca_cert: dir.join("other-ca.crt"),
            _cleanup: Arc::new(RemoveOnDrop(dir.clone())),
            dir,
        };
        for (path, marker) in [
            (&certs.client_key, "BEGIN PRIVATE KEY"),
            (&certs.client_key_sec1, "BEGIN EC PRIVATE KEY"),
            (&certs.client_rsa_key_pkcs1, "BEGIN RSA PRIVATE KEY"),
        ] {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            assert!(
                text.contains(marker),
                "{} should be {marker}",
                path.display()
            );
        }
        certs
    }
}
