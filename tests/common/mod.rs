//! Helpers shared by the in-process server tests.

/// A TCP port that was free a moment ago on 127.0.0.1.
///
/// Never the same port twice in one test process: the tests of a file run in parallel, and the
/// system may hand a port one test released (but its server has not bound yet) to the next.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
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

/// The runtime in-process servers run on: real tokio, two workers (as on a 2-core machine).
#[allow(dead_code)] // not every test binary that includes this module runs a server
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
