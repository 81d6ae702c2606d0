//! TLS client connections with rustls (ring provider), over any blocking [`Read`] + [`Write`]
//! stream: the guest's WasmEdge sockets, `std::net` in native tests.
//!
//! A [`TlsConfig`] is built once from [`TlsOptions`] (PEM bytes, already read from Traefik's
//! `settings.mounts` by the config layer) and shared; [`TlsConfig::connect`] wraps one stream and
//! completes the handshake before returning, so certificate errors surface at connect time and
//! every read of the handshake is bounded by the stream's timeouts. rustls' in-memory session
//! cache lives in the shared config, so later connections from the same instance resume
//! sessions (cheaper handshakes, which matters because sockets cannot outlive a request).
//!
//! Used by the Redis client ([`crate::resp`]) and by the HTTP client for the IdP.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// What to trust and what to present. PEM inputs are bytes (the files' contents).
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// Also trust the Mozilla roots shipped by `webpki-roots` (public CAs). On by default.
    pub public_roots: bool,
    /// Extra trusted CA certificates, PEM (one or more `CERTIFICATE` blocks).
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate chain, PEM, presented when the server asks for one.
    pub client_cert_pem: Option<Vec<u8>>,
    /// The client certificate's private key, PEM: PKCS#8 (`PRIVATE KEY`), PKCS#1
    /// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
    pub client_key_pem: Option<Vec<u8>>,
    /// Accept any server certificate (the handshake signature is still checked, the certificate
    /// chain and name are not). For tests only: anyone on the path can read and change traffic.
    pub insecure_skip_verify: bool,
    /// Name to send as SNI and to verify the certificate against, instead of the host dialed.
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// Verification against the public roots, no client certificate.
    pub fn new() -> Self {
        Self {
            public_roots: true,
            ..Self::default()
        }
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("public_roots", &self.public_roots)
            .field("ca_pem", &self.ca_pem.as_ref().map(|c| c.len()))
            .field(
                "client_cert_pem",
                &self.client_cert_pem.as_ref().map(|c| c.len()),
            )
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// Why a [`TlsConfig`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsError {
    /// The CA PEM holds no usable certificate.
    Ca(String),
    /// The client certificate PEM holds no usable certificate.
    ClientCert(String),
    /// The client key PEM holds no usable key, or it does not fit the certificate.
    ClientKey(String),
    /// A client certificate without a key, or a key without a certificate.
    ClientAuthIncomplete,
    /// The server name override is not a DNS name or IP address.
    ServerName(String),
    /// Verification is on but no root is trusted (public roots off and no CA given).
    NoRoots,
    /// rustls refused the configuration.
    Config(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Ca(s) => write!(f, "CA certificates: expected PEM CERTIFICATE blocks: {s}"),
            TlsError::ClientCert(s) => {
                write!(
                    f,
                    "client certificate: expected PEM CERTIFICATE blocks: {s}"
                )
            }
            TlsError::ClientKey(s) => write!(
                f,
                "client key: expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY \
                 matching the certificate: {s}"
            ),
            TlsError::ClientAuthIncomplete => {
                f.write_str("a client certificate needs both the certificate and its key")
            }
            TlsError::ServerName(s) => {
                write!(
                    f,
                    "server name: expected a DNS name or IP address, found {s:?}"
                )
            }
            TlsError::NoRoots => {
                f.write_str("no trusted root: give a CA certificate or enable the public roots")
            }
            TlsError::Config(s) => write!(f, "TLS configuration: {s}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// A ready client configuration: build once, [`connect`](TlsConfig::connect) many times.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsConfig {
    /// Builds the rustls configuration.
    ///
    /// # Errors
    /// [`TlsError`] when a PEM input holds nothing usable, the key does not match, or nothing
    /// would be trusted.
    pub fn new(opts: &TlsOptions) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if opts.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(DangerousAcceptAnyServerCert(
                    provider.signature_verification_algorithms,
                )))
        } else {
            let mut roots = RootCertStore::empty();
            if opts.public_roots {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            if let Some(pem) = &opts.ca_pem {
                let mut added = 0;
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| TlsError::Ca(e.to_string()))?;
                    roots.add(cert).map_err(|e| TlsError::Ca(e.to_string()))?;
                    added += 1;
                }
                if added == 0 {
                    return Err(TlsError::Ca("no CERTIFICATE block found".into()));
                }
            }
            if roots.is_empty() {
                return Err(TlsError::NoRoots);
            }
            builder.with_root_certificates(roots)
        };
        let config = match (&opts.client_cert_pem, &opts.client_key_pem) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| TlsError::ClientCert(e.to_string()))?;
                if chain.is_empty() {
                    return Err(TlsError::ClientCert("no CERTIFICATE block found".into()));
                }
                // The key's bytes are never put in an error message.
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|_| TlsError::ClientKey("no usable key block found".into()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::ClientKey(e.to_string()))?
            }
            _ => return Err(TlsError::ClientAuthIncomplete),
        };
        let server_name = match &opts.server_name {
            Some(n) => {
                Some(ServerName::try_from(n.clone()).map_err(|_| TlsError::ServerName(n.clone()))?)
            }
            None => None,
        };
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }

    /// Starts TLS on `stream` (connected to `host`) and completes the handshake.
    ///
    /// The server name is the override if one was configured, else `host`: a DNS name is sent
    /// as SNI and verified against the certificate's DNS names; an IP address is not sent
    /// (RFC 6066 §3 forbids literal IPs in SNI) and is verified against its IP address SANs.
    ///
    /// # Errors
    /// The stream's I/O errors (timeouts included), and [`io::ErrorKind::InvalidData`] wrapping
    /// the rustls error when the handshake fails (certificate not trusted, name mismatch, alert).
    ///
    /// The handshake as a whole must finish within `budget` (each read still waits at most its
    /// own timeout): a peer that trickles its handshake a byte at a time, before any certificate
    /// is checked, is cut off then. Afterwards the stream has no deadline of its own.
    pub fn connect<S: Read + Write>(
        &self,
        host: &str,
        stream: S,
        budget: std::time::Duration,
    ) -> io::Result<TlsStream<super::Deadline<S>>> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.to_owned()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("TLS: {host:?} is not a DNS name or IP address"),
                )
            })?,
        };
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut tls = rustls::StreamOwned::new(conn, super::Deadline::new(stream, budget));
        while tls.conn.is_handshaking() {
            let (read, written) = tls.conn.complete_io(&mut tls.sock)?;
            if read == 0 && written == 0 && tls.conn.is_handshaking() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "TLS: connection closed during the handshake",
                ));
            }
        }
        tls.sock.restart(None);
        Ok(TlsStream(tls))
    }
}

/// A client TLS stream whose handshake is complete.
pub struct TlsStream<S: Read + Write>(rustls::StreamOwned<ClientConnection, S>);

impl<S: Read + Write> TlsStream<S> {
    /// The negotiated protocol version, e.g. `"TLSv1_3"`.
    pub fn protocol_version(&self) -> Option<String> {
        self.0.conn.protocol_version().map(|v| format!("{v:?}"))
    }

    /// Whether this connection resumed an earlier session.
    pub fn resumed(&self) -> bool {
        matches!(
            self.0.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        )
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The verifier behind `insecure_skip_verify`: trusts any certificate for any name. The
/// handshake signature is still verified, so the peer must at least hold the key of the
/// certificate it shows; that proves nothing about who it is.
#[derive(Debug)]
struct DangerousAcceptAnyServerCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for DangerousAcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn options_are_checked() {
        assert!(TlsConfig::new(&TlsOptions::new()).is_ok());
        let none = TlsOptions {
            public_roots: false,
            ..TlsOptions::default()
        };
        assert_eq!(TlsConfig::new(&none).unwrap_err(), TlsError::NoRoots);
        let skip = TlsOptions {
            insecure_skip_verify: true,
            ..TlsOptions::default()
        };
        assert!(TlsConfig::new(&skip).is_ok());
        let bad_ca = TlsOptions {
            ca_pem: Some(b"not pem".to_vec()),
            ..TlsOptions::new()
        };
        assert!(matches!(TlsConfig::new(&bad_ca), Err(TlsError::Ca(_))));
        let half = TlsOptions {
            client_cert_pem: Some(vec![]),
            ..TlsOptions::new()
        };
        assert_eq!(
            TlsConfig::new(&half).unwrap_err(),
            TlsError::ClientAuthIncomplete
        );
        let name = TlsOptions {
            server_name: Some("bad name".into()),
            ..TlsOptions::new()
        };
        assert!(matches!(
            TlsConfig::new(&name),
            Err(TlsError::ServerName(_))
        ));
        let key = TlsOptions {
            client_key_pem: Some(
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec(),
            ),
            ..TlsOptions::new()
        };
        assert!(format!("{key:?}").contains("<redacted>"));
        assert!(!format!("{key:?}").contains("AAAA"));
    }
}
