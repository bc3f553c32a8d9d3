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

/// One length-prefixed frame's payload read from `s`.
#[allow(dead_code)] // not every test binary that includes this module speaks raw jute
pub async fn read_frame<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let mut b = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut b).await?;
    Ok(b)
}

/// A raw handshake over `s` asking for a new session of `timeout_ms`: the server's answer.
#[allow(dead_code)] // not every test binary that includes this module speaks raw jute
pub async fn handshake<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    timeout_ms: i32,
) -> std::io::Result<zraft::jute::ConnectResponse> {
    use tokio::io::AsyncWriteExt;
    use zraft::jute::*;
    let hello = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        time_out: timeout_ms,
        session_id: 0,
        passwd: vec![0; 16],
        read_only: Some(false),
    };
    s.write_all(&encode_frame(&hello.to_bytes())).await?;
    s.flush().await?;
    Ok(ConnectResponse::from_bytes(&read_frame(s).await?).expect("a connect response"))
}
