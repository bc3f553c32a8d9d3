//! A local ensemble for trying zraft out (`zraft ensemble`): one process per node on
//! 127.0.0.1, and membership changes of the running ensemble through reconfig as an operator
//! makes them (`zraft ensemble add N`, `zraft ensemble remove N`). Node N of base port B
//! serves clients on B + N - 1 and its peers on B + 1000 + N (election port B + 2000 + N);
//! it keeps its zoo.cfg, myid, data, log and pid in `<dir>/nodeN`.

use crate::client::{Client, ClientError};
use crate::jute::{ReconfigRequest, Request, Response};
use crate::server::membership::DynamicConfig;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The super user reconfig goes through (`ZRAFT_SUPER`, default `super:secret`); the nodes
/// get its digest.
pub fn super_user() -> String {
    std::env::var("ZRAFT_SUPER").unwrap_or_else(|_| "super:secret".into())
}

/// Node `id`'s `server.N` line.
pub fn server_line(id: u64, base: u16) -> String {
    let b = base as u64;
    format!(
        "server.{id}=127.0.0.1:{}:{}:participant;127.0.0.1:{}",
        b + 1000 + id,
        b + 2000 + id,
        b + id - 1
    )
}

/// Node `id`'s client address.
pub fn client_addr(id: u64, base: u16) -> String {
    format!("127.0.0.1:{}", base as u64 + id - 1)
}

/// Writes node `id`'s zoo.cfg (listing `members`, itself among them) and myid, and starts it
/// with `exe`; its output goes to `<dir>/nodeN/log`, its pid to `<dir>/nodeN/pid`.
pub fn start_node(exe: &Path, dir: &str, id: u64, base: u16, members: &[String]) -> std::io::Result<Child> {
    let d = format!("{dir}/node{id}");
    std::fs::create_dir_all(&d)?;
    std::fs::write(format!("{d}/myid"), format!("{id}\n"))?;
    let cfg = format!(
        "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={d}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
         maxClientCnxns=0\n4lw.commands.whitelist=*\nreconfigEnabled=true\n{}\n",
        base as u64 + id - 1,
        members.join("\n")
    );
    let path = format!("{d}/zoo.cfg");
    std::fs::write(&path, cfg)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{d}/log"))?;
    let child = Command::new(exe)
        .args(["serve", "--config", &path])
        .env("ZRAFT_SUPER_DIGEST", crate::tree::acl::digest_id(&super_user()))
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()?;
    std::fs::write(format!("{d}/pid"), format!("{}\n", child.id()))?;
    Ok(child)
}

/// Why a membership change of the local ensemble failed.
#[derive(Debug, thiserror::Error)]
pub enum EnsembleError {
    #[error("no node of the ensemble answers on ports {0}..")]
    NoneAnswers(u16),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("node {0} did not start serving within 20 s (see its log)")]
    NotServing(u64),
    #[error("node {0} is already a member")]
    AlreadyMember(u64),
    #[error("node {0} is not a member")]
    NotMember(u64),
    #[error("reconfig: {0}")]
    Client(#[from] ClientError),
}

/// A session with the super user on the first member that answers (none of `avoid`).
async fn operator(base: u16, avoid: u64) -> Result<(Client, DynamicConfig), EnsembleError> {
    for id in (1..=32).filter(|&i| i != avoid) {
        let Ok(mut c) = Client::connect(&client_addr(id, base), 4000, None, 0).await else {
            continue;
        };
        let Ok((Some(data), _)) = c.get("/zookeeper/config").await else {
            continue;
        };
        let Ok(Some(cfg)) = DynamicConfig::parse(&String::from_utf8_lossy(&data)) else {
            continue;
        };
        c.auth("digest", super_user().as_bytes(), Duration::from_secs(4))
            .await?;
        return Ok((c, cfg));
    }
    Err(EnsembleError::NoneAnswers(base))
}

/// Whether the server at `addr` answers `ruok`.
async fn imok(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await else {
        return false;
    };
    if s.write_all(b"ruok").await.is_err() {
        return false;
    }
    let mut out = vec![];
    let _ = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut out)).await;
    out == b"imok"
}

/// Sends a reconfig; the new membership.
async fn reconfig(c: &mut Client, r: ReconfigRequest) -> Result<String, EnsembleError> {
    match c.ok(Request::Reconfig(r), Duration::from_secs(30)).await? {
        Response::GetData(g) => Ok(String::from_utf8_lossy(g.data.as_deref().unwrap_or_default()).into_owned()),
        other => Err(EnsembleError::Client(ClientError::Protocol(format!("{other:?}")))),
    }
}

/// Starts node `id` with the current membership and itself, waits until it serves, and adds
/// it by reconfig; the new membership.
pub async fn add(exe: &Path, dir: &str, base: u16, id: u64) -> Result<String, EnsembleError> {
    let (mut c, current) = operator(base, id).await?;
    if current.servers.contains_key(&id) {
        return Err(EnsembleError::AlreadyMember(id));
    }
    let mut members: Vec<String> = current
        .servers
        .iter()
        .map(|(i, s)| format!("server.{i}={}", s.render()))
        .collect();
    members.push(server_line(id, base));
    start_node(exe, dir, id, base, &members)?;
    // It cannot open sessions before it joins: ask it `ruok`.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !imok(&client_addr(id, base)).await {
        if Instant::now() > deadline {
            return Err(EnsembleError::NotServing(id));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = ReconfigRequest {
        joining_servers: Some(server_line(id, base)),
        leaving_servers: None,
        new_members: None,
        cur_config_id: -1,
    };
    reconfig(&mut c, r).await
}

/// Removes node `id` by reconfig (through another member), then stops its process; the new
/// membership.
pub async fn remove(dir: &str, base: u16, id: u64) -> Result<String, EnsembleError> {
    let (mut c, current) = operator(base, id).await?;
    if !current.servers.contains_key(&id) {
        return Err(EnsembleError::NotMember(id));
    }
    let r = ReconfigRequest {
        joining_servers: None,
        leaving_servers: Some(id.to_string()),
        new_members: None,
        cur_config_id: -1,
    };
    let config = match reconfig(&mut c, r).await {
        Ok(c) => c,
        // Its server saw the leader go (the node removed led): read what was committed.
        Err(EnsembleError::Client(ClientError::ConnectionLoss | ClientError::Timeout)) => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            operator(base, id).await?.1.render()
        }
        Err(e) => return Err(e),
    };
    if let Ok(pid) = std::fs::read_to_string(format!("{dir}/node{id}/pid")) {
        // The node left the ensemble and serves nobody now: stop it as an operator would.
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    Ok(config)
}
