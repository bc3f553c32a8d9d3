//! Helpers shared by the in-process server tests.

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client of the server at `addr`, retrying while the server starts.
pub async fn connect(addr: &str) -> zraft::client::Client {
    for _ in 0..200 {
        if let Ok(c) = zraft::client::Client::connect(addr, 10_000, None, 0).await {
            return c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("server at {addr} accepts no clients");
}
