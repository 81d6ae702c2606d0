//! TLS client connections with rustls (being written).
