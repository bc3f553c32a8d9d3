//! Three zraft nodes in madsim's simulation (simulated TCP, clock and disk) and a client node
//! doing a create through one server and a get through another, using zraft's jute client.
//! Run with `cargo sim-test` (sets --cfg madsim); in a normal build this file is empty.

#[cfg(madsim)]
mod sim {
    use madsim::runtime::Handle;
    use std::net::SocketAddr;
    use std::time::Duration;
    use zraft::client::Client;
    use zraft::jute::CreateMode;
    use zraft::server::config::{Config, Peer};
    use zraft::server::membership::ServerSpec;
    use zraft::storage::{Faults, SimDisk};

    fn config(id: u64) -> Config {
        Config {
            my_id: id,
            data_dir: format!("/data/{id}"),
            client_port: 2181,
            client_port_address: "0.0.0.0".into(),
            peers: (1..=3)
                .map(|i| Peer {
                    id: i,
                    spec: ServerSpec::parse(&format!("10.0.0.{i}:2888:3888")).expect("a valid spec"),
                })
                .collect(),
            raft_tick_ms: 100,
            ..Config::default()
        }
    }

    #[madsim::test]
    async fn three_nodes_create_and_get() {
        let handle = Handle::current();
        for id in 1..=3u64 {
            let disk = SimDisk::new(id, Faults::default());
            handle
                .create_node()
                .name(format!("zraft-{id}"))
                .ip(format!("10.0.0.{id}").parse().unwrap())
                .init(move || {
                    let disk = disk.clone();
                    async move {
                        zraft::server::run(config(id), Box::new(disk), id)
                            .await
                            .expect("server runs");
                    }
                })
                .build();
        }
        let client = handle
            .create_node()
            .name("client")
            .ip("10.0.0.100".parse().unwrap())
            .build();
        client
            .spawn(async move {
                // Let the ensemble elect a leader.
                madsim::time::sleep(Duration::from_secs(5)).await;
                let a: SocketAddr = "10.0.0.1:2181".parse().unwrap();
                let mut c = Client::connect(&a.to_string(), 10_000, None, 0)
                    .await
                    .expect("connect to node 1");
                assert_eq!(
                    c.create("/sim", b"hello", CreateMode::Persistent).await.unwrap(),
                    "/sim"
                );
                let zxid = c.last_zxid();
                // Node 3 refuses a client that has seen a newer zxid than it applied (ZooKeeper's
                // rule); like a real client, try again until it has caught up.
                let mut c2 = None;
                for _ in 0..50 {
                    if let Ok(c) = Client::connect("10.0.0.3:2181", 10_000, None, zxid).await {
                        c2 = Some(c);
                        break;
                    }
                    madsim::time::sleep(Duration::from_millis(100)).await;
                }
                let mut c2 = c2.expect("node 3 catches up and takes the client within 5 s");
                let req = zraft::jute::Request::Sync(zraft::jute::SyncRequest { path: "/sim".into() });
                c2.ok(req, Duration::from_secs(10)).await.unwrap();
                let (data, _) = c2.get("/sim").await.unwrap();
                assert_eq!(data.as_deref(), Some(&b"hello"[..]));
                eprintln!("simulated: created /sim at zxid {zxid:#x} via node 1, read it back via node 3 after sync");
            })
            .await
            .unwrap();
    }
}
