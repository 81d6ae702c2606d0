//! `echo-backend [ADDR]`: the echo upstream on ADDR (default 127.0.0.1:8081) until killed.

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".to_string());
    let b = oidc_guard_backend::Backend::start_on(&addr);
    println!("echo backend listening on {}", b.url());
    loop {
        std::thread::park();
    }
}
